package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/agentrun"
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
	// answered by the new code (issue 15).
	seeNewCode = time.Second
	// pause is each client's pause between an answer and its next message.
	pause = 20 * time.Millisecond
	// businessTime is how long the business code takes per message.
	businessTime = 50 * time.Millisecond
	// killedLine is what the agent logs when it kills a worker whose stop
	// timeout ran out.
	killedLine = "did not stop in time"
)

var _ = Describe("The gateway pattern under the agent", func() {
	It(fmt.Sprintf("keeps %d WebSocket clients' connections through %d reloads and a broken revision, and answers each message once, by the new code within %v", clients, reloads, seeNewCode), Label(suite.Slow), func() {
		a := startAgent()
		gatewayPIDs := a.pids("gateway")
		Expect(gatewayPIDs).To(HaveLen(1))

		var cs []*client
		for i := range clients {
			g, err := local.DialGateway(a.addr)
			Expect(err).NotTo(HaveOccurred(), "client %d", i)
			Expect(g.PID).To(Equal(strconv.Itoa(gatewayPIDs[0])), "the gateway that took client %d, as the agent says", i)
			c := &client{id: i, g: g}
			cs = append(cs, c)
			c.start()
		}
		DeferCleanup(func() {
			for _, c := range cs {
				_, _, _ = c.stop() // only if a failed spec left it running
			}
		})
		for _, c := range cs {
			Eventually(c.answered).Should(BeNumerically(">", 5), "client %d's first answers", c.id)
		}
		Eventually(a.gatewayConnections).Should(Equal(int32(clients)), "the gateway's open connections, as agent status counts them")

		running := a.running()
		for i := range reloads {
			if i == brokenAfter {
				By("a broken revision: its first business worker exits, the agent rolls back, the clients are answered by the revision that ran")
				a.breakCode()
				r, err := a.client.Reload(context.Background(), true)
				Expect(err).NotTo(HaveOccurred())
				Expect(r.Error).NotTo(BeEmpty(), "the broken revision's reload")
				Expect(r.Status.Running).To(Equal(running), "the revision after the rollback")
				checkAnswers(cs, time.Now(), running, "the rollback")
				a.fixCode()
			}
			rev := a.reload(i)
			Expect(rev).NotTo(Equal(running))
			running = rev
			checkAnswers(cs, a.reloaded, rev, fmt.Sprintf("reload %d", i+1))
		}

		total := 0
		for _, c := range cs {
			sent, answered, err := c.stop()
			total += answered
			Expect(err).NotTo(HaveOccurred(), "client %d: a message lost or answered twice, or its connection dropped", c.id)
			Expect(answered).To(Equal(sent), "client %d: messages answered", c.id)
			Expect(answered).To(BeNumerically(">", 10), "client %d: messages answered", c.id)
		}
		GinkgoWriter.Printf("%d messages answered, each once, on %d connections\n", total, clients)
		Expect(a.pids("gateway")).To(Equal(gatewayPIDs), "the gateway worker (never reloaded)")
		Eventually(a.gatewayConnections).Should(BeZero(), "the gateway's open connections once every client left")
		st, err := a.client.Status(context.Background())
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Killed()).To(BeZero(), "workers killed by their stop timeout, by agent status")
		Expect(string(a.out.Contents())).NotTo(ContainSubstring(killedLine), "the agent's log")
		a.stop()
		Expect(string(a.out.Contents())).NotTo(ContainSubstring(killedLine), "the agent's log, after its own drain")
	})
})

// checkAnswers waits until every client has an answer to a message sent
// after t, and checks that the first is from revision rev and came within
// seeNewCode of t.
func checkAnswers(cs []*client, t time.Time, rev, what string) {
	By(fmt.Sprintf("%s to %s: every client's next answer is that revision's, on its connection", what, rev))
	for _, c := range cs {
		var first answer
		Eventually(func() error {
			if err := c.failed(); err != nil {
				return StopTrying(fmt.Sprintf("client %d: a message lost or answered twice, or its connection dropped", c.id)).Wrap(err)
			}
			var ok bool
			if first, ok = c.firstSince(t); !ok {
				return errors.New("no answer yet")
			}
			return nil
		}).Should(Succeed(), "client %d: an answer to a message sent after %s", c.id, what)
		Expect(local.AnswerRevision(first.text)).To(Equal(rev), "client %d's first answer after %s: %q", c.id, what, first.text)
		Expect(first.at.Sub(t)).To(BeNumerically("<=", seeNewCode), "client %d was answered by the new revision %v after %s", c.id, first.at.Sub(t), what)
	}
}

// client sends messages on one WebSocket connection to the gateway, one at
// a time, each answered before the next: an answer lost, one answered
// twice or to another message, or the connection dropped ends it with an
// error.
type client struct {
	id   int
	g    *local.Gateway
	done chan struct{}
	quit chan struct{}
	once sync.Once

	mu      sync.Mutex
	sent    int
	answers []answer
	err     error
}

// answer is one answer, the moment it came and when its message was sent.
type answer struct {
	sent, at time.Time
	text     string
}

func (c *client) start() {
	c.done, c.quit = make(chan struct{}), make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(c.done)
		for n := 0; ; n++ {
			select {
			case <-c.quit:
				return
			case <-time.After(pause):
			}
			msg := fmt.Sprintf("client %d message %d", c.id, n)
			sent := time.Now()
			c.mu.Lock()
			c.sent++
			c.mu.Unlock()
			text, err := c.g.Ask(msg)
			c.mu.Lock()
			if err != nil {
				c.err = fmt.Errorf("message %d: %w", n, err)
				c.mu.Unlock()
				return
			}
			c.answers = append(c.answers, answer{sent: sent, at: time.Now(), text: text})
			c.mu.Unlock()
		}
	}()
}

// answered is how many answers came.
func (c *client) answered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.answers)
}

// failed returns the error that ended the client, if any.
func (c *client) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// firstSince returns the first answer to a message sent after t.
func (c *client) firstSince(t time.Time) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.answers {
		if !a.sent.Before(t) {
			return a, true
		}
	}
	return answer{}, false
}

// stop ends the client once its message in flight is answered, closes its
// connection, and returns what it sent, what was answered, and its error.
func (c *client) stop() (sent, answered int, err error) {
	c.once.Do(func() {
		close(c.quit)
		<-c.done
		_ = c.g.Close()
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent, len(c.answers), c.err
}

// agent is an `agent run` with examples/gateway's code.
type agent struct {
	code     string
	addr     string
	client   *control.Client
	s        *gexec.Session
	out      *gbytes.Buffer
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
	run := agentrun.Start(agentBin, config, sock, business+1)
	a.client, a.s, a.out = run.Client, run.Session, run.Out
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
	st, err := a.client.Status(context.Background())
	Expect(err).NotTo(HaveOccurred())
	return st.PIDs(group)
}

// gatewayConnections returns the gateway's open connections, as the agent
// counts them (agent status, and a pod's report).
func (a *agent) gatewayConnections() int32 {
	st, err := a.client.Status(context.Background())
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
	st, err := a.client.Status(context.Background())
	Expect(err).NotTo(HaveOccurred())
	return st.Agent.Running
}

// reload changes the business code's greeting and reloads the agent to it;
// it returns the new revision once the agent says the reload is over.
func (a *agent) reload(i int) string {
	Expect(os.WriteFile(filepath.Join(a.code, "greeting.txt"), fmt.Appendf(nil, "Hello from change %d\n", i+1), 0o644)).To(Succeed())
	r, err := a.client.Reload(context.Background(), true)
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
	Expect(os.WriteFile(path, append([]byte("raise SystemExit('a broken revision')\n"), b...), 0o644)).To(Succeed())
}

func (a *agent) fixCode() {
	path := filepath.Join(a.code, "business.py")
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	fixed, ok := strings.CutPrefix(string(b), "raise SystemExit('a broken revision')\n")
	Expect(ok).To(BeTrue())
	Expect(os.WriteFile(path, []byte(fixed), 0o644)).To(Succeed())
}

// stop drains the agent as a pod's shutdown does, and waits for its exit.
func (a *agent) stop() {
	a.s.Signal(syscall.SIGTERM)
	Eventually(a.s).Should(gexec.Exit(0))
}
