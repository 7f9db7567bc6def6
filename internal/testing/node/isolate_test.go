package node

import (
	"os"
	"os/exec"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"
)

func TestNode(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "node")
}

var _ = Describe("finding what the cluster left", func() {
	It("lists the descendants of this process, grandchildren too, and not this process", func() {
		// A shell whose child is the grandchild to find.
		cmd := exec.Command("sh", "-c", "sleep 60 & wait")
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() {
			for _, pid := range leftovers("net:[none]") {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
			_ = cmd.Wait()
		})
		Eventually(func() int { return len(leftovers("net:[none]")) }).Should(BeNumerically(">=", 2))
		Expect(leftovers("net:[none]")).To(ContainElement(cmd.Process.Pid))
		Expect(leftovers("net:[none]")).NotTo(ContainElement(os.Getpid()))
	})
})
