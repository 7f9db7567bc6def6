//go:build e2e

package keepalive_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/testing/agentrun"
	"github.com/softreload/softreload/internal/testing/loopback"
	"github.com/softreload/softreload/internal/testing/suite"
)

// example is one example worker: its directory, its command, and the
// interpreter it needs (none for Go, which the spec builds).
type example struct {
	dir         string
	command     string // YAML list
	interpreter string
	install     string // how to get the interpreter
}

// One line per example language.
var examples = map[string]example{
	"go":     {dir: "examples/go", command: `["./go-worker"]`},
	"python": {dir: "examples/python", command: `["python3", "worker.py"]`, interpreter: "python3", install: "apt-get install python3"},
	"php":    {dir: "examples/php", command: `["php", "worker.php"]`, interpreter: "php", install: "apt-get install php-cli"},
	"node":   {dir: "examples/node", command: `["node", "worker.js"]`, interpreter: "node", install: "apt-get install nodejs"},
}

const (
	reloads = 5
	// workers is the group's count; stopTimeout its stopTimeoutSeconds:
	// an old worker still running after it is killed, and that fails the
	// spec.
	workers     = 4
	stopTimeout = 10
	// seeNewCode is how soon after a reload's end every client must get an
	// answer of the new revision.
	seeNewCode = time.Second
)

var _ = Describe("An example worker under the agent", func() {
	for lang, ex := range examples {
		It(fmt.Sprintf("serves keep-alive and new-connection clients through %d reloads: %s", reloads, lang), Label(suite.Slow), func() {
			if ex.interpreter != "" {
				if _, err := exec.LookPath(ex.interpreter); err != nil {
					Fail(fmt.Sprintf("%s is not installed: the %s example needs it (%s)", ex.interpreter, lang, ex.install))
				}
			}
			a := startAgent(lang, ex)
			url := fmt.Sprintf("http://127.0.0.1:%d/", a.port)

			seen := newSeen()
			// Each request may take as long as any wait here: a loaded
			// machine is slow, not failing.
			keep := load.Options{Workers: 4, KeepAlive: true, Pause: 5 * time.Millisecond, Timeout: 2 * time.Minute, Observe: seen.observer("keep-alive")}
			fresh := load.Options{Workers: 2, Pause: 5 * time.Millisecond, Timeout: 2 * time.Minute, Observe: seen.observer("new-connection")}
			kept, opened := load.Start([]string{url}, keep), load.Start([]string{url}, fresh)
			DeferCleanup(func() { kept.Stop(); opened.Stop() })
			Eventually(func() int64 { return kept.Snapshot()[url].OK + opened.Snapshot()[url].OK }).Should(BeNumerically(">", 50))

			for i := range reloads {
				rev := a.reload(i)
				done := time.Now() // the reload's end, as its caller learns it
				seen.from(done)
				By(fmt.Sprintf("reload %d to %s: every client's next answer is the new revision's", i+1, rev))
				firsts := seen.wait(keep.Workers + fresh.Workers)
				for client, first := range firsts {
					Expect(first.Body).To(ContainSubstring("revision "+rev), "client %s's first answer after reload %d", client, i+1)
					Expect(first.Ended.Sub(done)).To(BeNumerically("<=", seeNewCode), "client %s saw the new revision %s after the reload's end", client, first.Ended.Sub(done))
				}
			}

			for name, g := range map[string]*load.Generator{"keep-alive": kept, "new-connection": opened} {
				s := g.Stop()[url]
				Expect(s.Failed).To(BeZero(), "%s clients: %d of %d requests failed: %v", name, s.Failed, s.OK+s.Failed, s.Errors)
				Expect(s.Retried).To(BeZero(), "%s clients: %d requests had to be sent again: %v", name, s.Retried, s.Errors)
				Expect(s.OK).NotTo(BeZero(), "%s clients: no request succeeded", name)
			}
			a.StopKillingNone()
		})
	}
})

// agent is an `agent run` with one example's code.
type agent struct {
	*agentrun.Agent
	code string
	port int
}

func startAgent(lang string, ex example) *agent {
	tmp := GinkgoT().TempDir()
	a := &agent{code: filepath.Join(tmp, "code"), port: loopback.FreePort(GinkgoTB())}
	Expect(os.CopyFS(a.code, os.DirFS(filepath.Join(root, ex.dir)))).To(Succeed())
	if lang == "go" {
		build(filepath.Join(a.code, "go-worker"), "./"+ex.dir)
	}
	sock := filepath.Join(tmp, "agent.sock")
	config := filepath.Join(tmp, "pool.yaml")
	Expect(os.WriteFile(config, fmt.Appendf(nil, `codeDir: code
stateDir: state
controlSocket: %s
groups:
  - name: web
    command: %s
    env: [{name: PYTHONDONTWRITEBYTECODE, value: "1"}]
    count: %d
    listen: ["tcp://127.0.0.1:%d"]
    readiness: {type: Notify, timeoutSeconds: 120}
    stopTimeoutSeconds: %d
`, sock, ex.command, workers, a.port, stopTimeout), 0o644)).To(Succeed())
	a.Agent = agentrun.Start(agentBin, config, sock, workers)
	return a
}

// reload changes the code and reloads the agent to it; it returns the new
// revision once the agent says the reload is over.
func (a *agent) reload(i int) string {
	f, err := os.OpenFile(filepath.Join(a.code, "CHANGES"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	Expect(err).NotTo(HaveOccurred())
	_, err = fmt.Fprintln(f, "change", i)
	Expect(err).NotTo(HaveOccurred())
	Expect(f.Close()).To(Succeed())
	r, err := a.Client.Reload(context.Background(), true)
	Expect(err).NotTo(HaveOccurred())
	Expect(r.Error).To(BeEmpty(), "reload %d failed", i+1)
	Expect(r.Status.State).To(Equal(v1alpha1.AgentReady))
	return r.Status.Running
}

// seen keeps, for each client, its first answer to a request sent after a
// moment.
type seen struct {
	mu     sync.Mutex
	after  time.Time
	firsts map[string]load.Answer // by client
}

func newSeen() *seen { return &seen{firsts: map[string]load.Answer{}} }

// from forgets what was seen and watches the requests sent after t.
func (s *seen) from(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.after, s.firsts = t, map[string]load.Answer{}
}

// observer is the load.Options.Observe of the clients called kind.
func (s *seen) observer(kind string) func(load.Answer) {
	return func(a load.Answer) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.after.IsZero() || a.Began.Before(s.after) || a.Err != nil {
			return // failures are counted by the generator, and fail the spec
		}
		key := fmt.Sprintf("%s client %d", kind, a.Client)
		if _, ok := s.firsts[key]; !ok {
			s.firsts[key] = a
		}
	}
}

// wait waits until n clients have an answer, and returns them.
func (s *seen) wait(n int) map[string]load.Answer {
	var out map[string]load.Answer
	Eventually(func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		out = make(map[string]load.Answer, len(s.firsts))
		for k, v := range s.firsts {
			out[k] = v
		}
		return len(out)
	}).Should(Equal(n))
	return out
}
