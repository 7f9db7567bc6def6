//go:build e2e

package gateway_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/agentrun"
	"github.com/softreload/softreload/internal/testing/gatewaycheck"
	"github.com/softreload/softreload/internal/testing/loopback"
	"github.com/softreload/softreload/internal/testing/suite"
)

const (
	// clients is how many WebSocket clients send messages all along.
	clients = 20
	reloads = 5
	// brokenAfter is the reload after which a broken revision is tried.
	brokenAfter = 3
	// business is the business group's count; stopTimeout its
	// stopTimeoutSeconds: a worker that does not drain in time is killed,
	// and that fails the spec.
	business    = 2
	stopTimeout = 10
	// seeNewCode is how soon after a reload's end every client must be
	// answered by the new code.
	seeNewCode = time.Second
	// pause is each client's pause between an answer and its next message.
	pause = 20 * time.Millisecond
	// businessTime is how long the business code takes per message.
	businessTime = 50 * time.Millisecond
)

var _ = Describe("The gateway pattern under the agent", func() {
	It(fmt.Sprintf("keeps %d WebSocket clients' connections through %d reloads and a broken revision, and answers each message once, by the new code within %v", clients, reloads, seeNewCode), Label(suite.Slow), func() {
		a := startAgent()
		gatewayPIDs := a.pids("gateway")
		Expect(gatewayPIDs).To(HaveLen(1))

		load, err := local.StartGatewayLoad([]string{a.addr}, clients, pause)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _, _, _ = load.Stop() }) // only if a failed spec left it running
		for i, c := range load.Clients {
			Expect(c.PID()).To(Equal(strconv.Itoa(gatewayPIDs[0])), "the gateway that took client %d, as the agent says", i)
			Eventually(c.Answered).Should(BeNumerically(">", 5), "client %d's first answers", i)
		}
		Eventually(a.gatewayConnections).Should(Equal(int32(clients)), "the gateway's open connections, as agent status counts them")

		running := a.running()
		for i := range reloads {
			if i == brokenAfter {
				By("a broken revision: its first business worker exits, the agent rolls back, the clients are answered by the revision that ran")
				a.breakCode()
				r, err := a.Client.Reload(context.Background(), true)
				Expect(err).NotTo(HaveOccurred())
				Expect(r.Error).NotTo(BeEmpty(), "the broken revision's reload")
				Expect(r.Status.Running).To(Equal(running), "the revision after the rollback")
				By("the rollback to " + running + ": every client's next answer is that revision's, on its connection")
				gatewaycheck.AnsweredBy(load.Clients, gatewaycheck.At(time.Now()), running, seeNewCode, "the rollback")
				a.fixCode()
			}
			rev := a.reload(i)
			Expect(rev).NotTo(Equal(running))
			running = rev
			By(fmt.Sprintf("reload %d to %s: every client's next answer is that revision's, on its connection", i+1, rev))
			gatewaycheck.AnsweredBy(load.Clients, gatewaycheck.At(a.reloaded), rev, seeNewCode, fmt.Sprintf("reload %d", i+1))
		}

		total := 0
		for i, c := range load.Clients {
			sent, answered, err := c.Stop()
			total += answered
			Expect(err).NotTo(HaveOccurred(), "client %d: a message lost or answered twice, or its connection dropped", i)
			Expect(answered).To(Equal(sent), "client %d: messages answered", i)
			Expect(answered).To(BeNumerically(">", 10), "client %d: messages answered", i)
		}
		GinkgoWriter.Printf("%d messages answered, each once, on %d connections\n", total, clients)
		Expect(a.pids("gateway")).To(Equal(gatewayPIDs), "the gateway worker (never reloaded)")
		Eventually(a.gatewayConnections).Should(BeZero(), "the gateway's open connections once every client left")
		a.StopKillingNone()
	})
})

// agent is an `agent run` with examples/gateway's code.
type agent struct {
	*agentrun.Agent
	code     string
	addr     string
	reloaded time.Time // when the last reload ended, as its caller learns it
}

func startAgent() *agent {
	tmp := GinkgoT().TempDir()
	a := &agent{code: filepath.Join(tmp, "code"), addr: fmt.Sprintf("127.0.0.1:%d", loopback.FreePort(GinkgoTB()))}
	Expect(os.CopyFS(a.code, os.DirFS(filepath.Join(root, "examples/gateway")))).To(Succeed())
	Expect(os.Remove(filepath.Join(a.code, "pool.yaml"))).To(Succeed())
	slowBusiness(filepath.Join(a.code, "business.py"))
	sock := filepath.Join(tmp, "agent.sock")
	businessAddr := "unix://" + filepath.Join(tmp, "business.sock")
	config := filepath.Join(tmp, "pool.yaml")
	Expect(os.WriteFile(config, fmt.Appendf(nil, `codeDir: code
stateDir: state
controlSocket: %[1]s
groups:
  - name: business
    command: [%[2]q, "business.py"]
    env: [{name: PYTHONDONTWRITEBYTECODE, value: "1"}]
    count: %[3]d
    listen: [%[4]q]
    readiness: {type: Notify, timeoutSeconds: 120}
    stopTimeoutSeconds: %[5]d
  - name: gateway
    command: [%[2]q, "gateway.py"]
    env:
      - {name: PYTHONDONTWRITEBYTECODE, value: "1"}
      - {name: BUSINESS_ADDRESS, value: %[4]q}
    count: 1
    reloadable: false
    listen: ["tcp://%[6]s"]
    readiness: {type: Notify, timeoutSeconds: 120}
`, sock, python, business, businessAddr, stopTimeout, a.addr), 0o644)).To(Succeed())
	a.Agent = agentrun.Start(agentBin, config, sock, business+1)
	return a
}

// slowBusiness makes the business code at path take businessTime per
// message, as real business code takes time: every stop of a business
// worker then finds messages in flight, which it must answer before it
// exits (or the gateway must send again).
func slowBusiness(path string) {
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	const def = "def answer(message):\n"
	Expect(strings.Count(string(b), def)).To(Equal(1), "%s: its answer function", path)
	slow := strings.Replace(string(b), def, fmt.Sprintf("%s    __import__('time').sleep(%g)\n", def, businessTime.Seconds()), 1)
	Expect(os.WriteFile(path, []byte(slow), 0o644)).To(Succeed())
}

// pids returns the pids of the group's workers.
func (a *agent) pids(group string) []int {
	st, err := a.Client.Status(context.Background())
	Expect(err).NotTo(HaveOccurred())
	return st.PIDs(group)
}

// gatewayConnections returns the gateway's open connections, as the agent
// counts them (agent status, and a pod's report).
func (a *agent) gatewayConnections() int32 {
	st, err := a.Client.Status(context.Background())
	Expect(err).NotTo(HaveOccurred())
	for _, g := range st.Agent.Groups {
		if g.Name == "gateway" {
			return g.Connections
		}
	}
	Fail("agent status has no group gateway")
	return 0
}

// running returns the revision the workers run.
func (a *agent) running() string {
	st, err := a.Client.Status(context.Background())
	Expect(err).NotTo(HaveOccurred())
	return st.Agent.Running
}

// reload changes the business code's greeting and reloads the agent to it;
// it returns the new revision once the agent says the reload is over.
func (a *agent) reload(i int) string {
	Expect(os.WriteFile(filepath.Join(a.code, "greeting.txt"), fmt.Appendf(nil, "Hello from change %d\n", i+1), 0o644)).To(Succeed())
	r, err := a.Client.Reload(context.Background(), true)
	a.reloaded = time.Now()
	Expect(err).NotTo(HaveOccurred())
	Expect(r.Error).To(BeEmpty(), "reload %d failed", i+1)
	Expect(r.Status.State).To(Equal(v1alpha1.AgentReady))
	return r.Status.Running
}

// breakCode makes the business worker exit at once; fixCode undoes it.
func (a *agent) breakCode() {
	path := filepath.Join(a.code, "business.py")
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(path, append([]byte(local.BrokenBusiness), b...), 0o644)).To(Succeed())
}

func (a *agent) fixCode() {
	path := filepath.Join(a.code, "business.py")
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	fixed, ok := strings.CutPrefix(string(b), local.BrokenBusiness)
	Expect(ok).To(BeTrue())
	Expect(os.WriteFile(path, []byte(fixed), 0o644)).To(Succeed())
}
