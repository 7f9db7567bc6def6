package main

import (
	"os/exec"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/testing/envtest"
)

// The manager runs in the cluster with the rights of the operator; the
// agent runs in every governed pod. The manager shares names with the agent
// through internal/injected, and links none of the agent's workers,
// processes or sockets: code it never runs.
var _ = Describe("The manager binary", func() {
	It("links none of the agent's supervisor, process and socket code", func() {
		root, err := envtest.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		cmd := exec.Command("go", "list", "-deps", "./cmd/manager")
		cmd.Dir = root
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		Expect(err).NotTo(HaveOccurred(), "go list -deps ./cmd/manager: %s", stderr.String())
		deps := strings.Fields(string(out))
		Expect(deps).To(ContainElement("github.com/softreload/softreload/internal/injection"),
			"go list -deps ./cmd/manager does not list the manager's own packages:\n%s", out)
		for _, agent := range []string{"agent/supervisor", "agent/process", "agent/sockets"} {
			Expect(deps).NotTo(ContainElement("github.com/softreload/softreload/"+agent),
				"cmd/manager depends on %s; go list -deps ./cmd/manager:\n%s", agent, out)
		}
	})
})
