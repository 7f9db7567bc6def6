package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/agent/pod"
	"github.com/softreload/softreload/agent/testworker"
)

// codeContainer is one start of the code container of image mode: agent
// code-sync with the environment the downward API gives it.
type codeContainer struct {
	cmd  *exec.Cmd
	out  *testworker.Output
	done chan error
}

func startCodeSync(root, image, path string) *codeContainer {
	GinkgoHelper()
	c := &codeContainer{out: &testworker.Output{}, done: make(chan error, 1)}
	c.cmd = exec.Command(agentBin, "code-sync", "--root", root)
	c.cmd.Env = append(os.Environ(), pod.EnvCodeImage+"="+image, pod.EnvCodePath+"="+path)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	Expect(c.cmd.Start()).To(Succeed())
	go func() { c.done <- c.cmd.Wait() }()
	DeferCleanup(func() { _ = c.cmd.Process.Kill() })
	return c
}

// delivered waits until the container says it delivered the code, then
// stops it as the kubelet does when the image changes.
func (c *codeContainer) delivered() {
	GinkgoHelper()
	Eventually(func() (bool, error) {
		select {
		case err := <-c.done:
			return false, StopTrying(fmt.Sprintf("code-sync exited before SIGTERM: %v\n%s", err, c.out.String()))
		default:
		}
		return strings.Contains(c.out.String(), "is in"), nil
	}).WithTimeout(wait).WithPolling(20*time.Millisecond).Should(BeTrue(), func() string {
		return "code-sync said nothing:\n" + c.out.String()
	})
	// A SIGHUP (a reload signal elsewhere) does not end it; the SIGTERM
	// that follows stops it cleanly.
	Expect(c.cmd.Process.Signal(syscall.SIGHUP)).To(Succeed())
	Expect(c.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	Expect(<-c.done).To(Succeed(), func() string { return "code-sync after SIGTERM:\n" + c.out.String() })
}

// failed waits until the container exits with an error that says want.
func (c *codeContainer) failed(want string) {
	GinkgoHelper()
	var err error
	Eventually(c.done).WithTimeout(wait).Should(Receive(&err), func() string { return "code-sync did not fail:\n" + c.out.String() })
	var exit *exec.ExitError
	Expect(errors.As(err, &exit)).To(BeTrue(), "code-sync ended with %v, want an exit status", err)
	Expect(c.out.String()).To(ContainSubstring(want), "code-sync's failure")
}

var _ = Describe("agent code-sync", func() {
	// The code container of a pod delivers the code of whatever image it
	// runs, to where the agent looks for that image, however often the
	// controller changes its image: the kubelet starts it again each time,
	// with the annotations of the new image.
	It("delivers the image it runs", func() {
		root := GinkgoT().TempDir()
		image := func(files map[string]string) string { // an image's /code
			dir := GinkgoT().TempDir()
			for name, content := range files {
				path := filepath.Join(dir, name)
				Expect(os.MkdirAll(filepath.Dir(path), 0o755)).To(Succeed())
				Expect(os.WriteFile(path, []byte(content), 0o644)).To(Succeed())
			}
			return dir
		}
		v1 := image(map[string]string{"app.py": "v1", "lib/util.py": "u"})
		v2 := image(map[string]string{"app.py": "v2", "lib/util.py": "u"})
		holds := func(ref, path string, want map[string]string) {
			GinkgoHelper()
			for name, content := range want {
				got, err := os.ReadFile(filepath.Join(pod.ImageCodeDir(root, ref, path), name))
				Expect(err).NotTo(HaveOccurred(), "%s of image %s in the code volume", name, ref)
				Expect(string(got)).To(Equal(content), "%s of image %s in the code volume", name, ref)
			}
		}

		startCodeSync(root, "registry.example/code:v1", v1).delivered()
		holds("registry.example/code:v1", v1, map[string]string{"app.py": "v1", "lib/util.py": "u"})

		By("the controller moving the pod to v2: same command, new image")
		startCodeSync(root, "registry.example/code:v2", v2).delivered()
		holds("registry.example/code:v2", v2, map[string]string{"app.py": "v2"})
		holds("registry.example/code:v1", v1, map[string]string{"app.py": "v1"})

		By("a rollback to v1, which finds its code there, the same")
		startCodeSync(root, "registry.example/code:v1", v1).delivered()

		By("v1's tag naming other code: never kept silently, and the code that workers may run left as it was")
		Expect(os.WriteFile(filepath.Join(v1, "app.py"), []byte("v1, pushed again"), 0o644)).To(Succeed())
		startCodeSync(root, "registry.example/code:v1", v1).failed("already holds other code")
		holds("registry.example/code:v1", v1, map[string]string{"app.py": "v1"})
	})

	// Without the annotations (a pod made by hand, say) code-sync says what
	// it misses.
	It("needs its image", func() {
		startCodeSync(GinkgoT().TempDir(), "", "/code").failed(pod.EnvCodeImage + " is empty")
	})
})
