// Package agentrun runs the agent binary as `agent run --config`, the way a
// user runs it, for the specs that drive it from outside through its
// control socket: it starts the agent, waits until every worker is ready,
// and kills the agent at the end of the spec if the spec left it running.
package agentrun

import (
	"context"
	"fmt"
	"os/exec"
	"syscall"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/api/v1alpha1"
)

// Agent is a running `agent run`.
type Agent struct {
	// Client reaches the agent's control socket.
	Client *control.Client
	// Session is the agent's process.
	Session *gexec.Session
	// Out holds what the agent and its workers write.
	Out *gbytes.Buffer
}

// Start runs the agent at bin with the config file at config, whose
// controlSocket is socket, and waits until it is Ready with ready workers.
func Start(bin, config, socket string, ready int32) *Agent {
	ginkgo.GinkgoHelper()
	a := &Agent{Client: control.NewClient(socket), Out: gbytes.NewBuffer()}
	var err error
	a.Session, err = gexec.Start(exec.Command(bin, "run", "--config", config), a.Out, a.Out)
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "starting agent run")
	ginkgo.DeferCleanup(func() {
		a.Session.Kill() // only if a failed spec left it running
		gomega.Eventually(a.Session).Should(gexec.Exit())
	})
	gomega.Eventually(func() error {
		st, err := a.Client.Status(context.Background())
		if err != nil {
			return err
		}
		if st.Agent.State != v1alpha1.AgentReady || st.Agent.Ready != ready {
			return fmt.Errorf("%s, %d of %d workers ready", st.Agent.State, st.Agent.Ready, st.Agent.Total)
		}
		return nil
	}).Should(gomega.Succeed(), "every worker ready")
	return a
}

// killedLine is what the agent logs when it kills a worker whose stop
// timeout ran out.
const killedLine = "did not stop in time"

// StopKillingNone checks that the agent killed no worker for its stop
// timeout (by agent status, and in its log), then stops the agent as a
// pod's shutdown does (SIGTERM) and checks that it drained every worker
// without killing one and exited 0.
func (a *Agent) StopKillingNone() {
	ginkgo.GinkgoHelper()
	st, err := a.Client.Status(context.Background())
	gomega.Expect(err).NotTo(gomega.HaveOccurred())
	gomega.Expect(st.Killed()).To(gomega.BeZero(), "workers killed by their stop timeout, by agent status")
	gomega.Expect(string(a.Out.Contents())).NotTo(gomega.ContainSubstring(killedLine), "the agent's log")
	a.Session.Signal(syscall.SIGTERM)
	gomega.Eventually(a.Session).Should(gexec.Exit(0))
	gomega.Expect(string(a.Out.Contents())).NotTo(gomega.ContainSubstring(killedLine), "the agent's log, after its own drain")
}
