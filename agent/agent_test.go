package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	"github.com/softreload/softreload/agent"
	"github.com/softreload/softreload/agent/config"
	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/procstat"
	"github.com/softreload/softreload/internal/testing/loopback"
	"github.com/softreload/softreload/internal/testing/suite"
)

// wait is the generous deadline of every wait for an event in these specs:
// they never depend on how fast the machine is.
const wait = 2 * time.Minute

// testGroup is a group of test workers (this test binary run again) on a
// free loopback port, ready when they say READY=1.
func testGroup(name string, count int32, mods ...func(*v1alpha1.WorkerGroup)) v1alpha1.WorkerGroup {
	self, err := os.Executable()
	Expect(err).NotTo(HaveOccurred())
	g := v1alpha1.WorkerGroup{
		Name:    name,
		Command: []string{self},
		Count:   count,
		// The race detector waits a second at exit unless told not to.
		Env:       []v1alpha1.EnvVar{{Name: testworker.Env, Value: "1"}, {Name: "GORACE", Value: "atexit_sleep_ms=0"}},
		Listen:    []v1alpha1.ListenAddress{v1alpha1.ListenAddress(fmt.Sprintf("tcp://127.0.0.1:%d", loopback.FreePort(GinkgoTB())))},
		Readiness: v1alpha1.Readiness{Type: v1alpha1.ReadinessNotify, TimeoutSeconds: 120},
	}
	for _, m := range mods {
		m(&g)
	}
	return g
}

// pool is a running agent over a code directory the spec edits.
type pool struct {
	code   string
	agent  *agent.Agent
	out    *testworker.Output
	runErr chan error
	groups []v1alpha1.WorkerGroup
}

type poolOptions struct {
	strategy       v1alpha1.RolloutStrategy
	backoff        time.Duration
	noWaitForReady bool
	mode           string
	reapOrphans    bool
	// code, if set, is the code directory, written by the spec; otherwise
	// startPool makes one with version 1 and mode.
	code string
}

// startPool runs an agent of groups until the spec ends.
func startPool(o poolOptions, groups ...v1alpha1.WorkerGroup) *pool {
	GinkgoHelper()
	p := &pool{code: o.code, out: &testworker.Output{}, runErr: make(chan error, 1), groups: groups}
	if p.code == "" {
		p.code = GinkgoT().TempDir()
		p.write("version", "1")
		p.write("mode", o.mode)
	}
	sock, err := os.MkdirTemp("", "sr")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, sock)
	cfg := &config.Config{
		CodeDir: p.code, StateDir: GinkgoT().TempDir(), ControlSocket: filepath.Join(sock, "c.sock"),
		Groups: groups, Strategy: o.strategy,
	}
	config.SetDefaults(cfg, p.code)
	Expect(config.Validate(cfg).ToAggregate()).To(Succeed(), "the spec's config")
	backoff := o.backoff
	if backoff == 0 {
		backoff = 100 * time.Millisecond
	}
	p.run(cfg, backoff, o.reapOrphans, !o.noWaitForReady)
	return p
}

// write changes a file of the code directory.
func (p *pool) write(name, content string) {
	GinkgoHelper()
	Expect(os.WriteFile(filepath.Join(p.code, name), []byte(content), 0o644)).To(Succeed())
}

// waitFor waits until the agent's status is one that cond takes, described
// by what, and returns it.
// run runs an agent of cfg until the spec ends, its workers restarted after
// backoff (up to 8 times it), and waits for every worker ready if asked.
func (p *pool) run(cfg *config.Config, backoff time.Duration, reapOrphans, waitReady bool) {
	GinkgoHelper()
	a, err := agent.New(context.Background(), agent.Options{
		Config: cfg, Stdout: p.out, Stderr: p.out,
		Logger:         slog.New(slog.NewTextHandler(p.out, nil)),
		BackoffInitial: backoff, BackoffMax: 8 * backoff,
		ReapOrphans: reapOrphans,
	})
	Expect(err).NotTo(HaveOccurred())
	p.agent = a
	go func() { p.runErr <- a.Run(context.Background()) }()
	DeferCleanup(func() {
		a.Stop()
		var err error
		Eventually(p.runErr).WithTimeout(wait).Should(Receive(&err), "the agent did not stop")
		Expect(err).NotTo(HaveOccurred(), "Run")
		if CurrentSpecReport().Failed() || os.Getenv("SOFTRELOAD_TEST_OUTPUT") != "" {
			fmt.Fprintf(GinkgoWriter, "agent and worker output:\n%s\n", p.out.String())
		}
	})
	if waitReady {
		p.waitFor("every worker ready", func(st supervisor.Status) bool {
			return st.Agent.State == v1alpha1.AgentReady && st.Agent.Ready == st.Agent.Total
		})
	}
}

func (p *pool) waitFor(what string, cond func(supervisor.Status) bool) supervisor.Status {
	GinkgoHelper()
	var st supervisor.Status
	Eventually(func() bool { st = p.agent.Status(); return cond(st) }).WithTimeout(wait).WithPolling(10*time.Millisecond).
		Should(BeTrue(), func() string { return fmt.Sprintf("waiting for %s; status: %+v", what, st) })
	return st
}

func (p *pool) url(group string) string {
	return "http://" + p.agent.Addrs(group)[0].String() + "/"
}

// startLoad sends requests to url from clients at once, each on a new
// connection, until the spec ends or checkLoad.
func startLoad(url string, clients int) *load.Generator {
	// Each request may take as long as any wait here: a loaded machine
	// is slow, not failing.
	g := load.Start([]string{url}, load.Options{Workers: clients, Pause: 2 * time.Millisecond, Timeout: wait})
	DeferCleanup(func() { g.Stop() })
	return g
}

// checkLoad stops the load and fails the spec if any request failed or
// none succeeded.
func checkLoad(g *load.Generator) {
	GinkgoHelper()
	ok, failed, errs := load.Total(g.Stop())
	fmt.Fprintf(GinkgoWriter, "%d requests, %d failed\n", ok+failed, failed)
	Expect(failed).To(BeZero(), "%d of %d requests failed, e.g. %v", failed, ok+failed, errs)
	Expect(ok).NotTo(BeZero(), "no request succeeded")
}

// distinct sends n requests to url and returns the distinct values field
// takes of the answers, sorted.
func distinct(url string, n int, field func(body string) string) []string {
	GinkgoHelper()
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]bool{}
	for range n {
		resp, err := c.Get(url)
		Expect(err).NotTo(HaveOccurred(), "GET %s", url)
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		seen[field(string(b))] = true
	}
	out := slices.Collect(maps.Keys(seen))
	slices.Sort(out)
	return out
}

// answers sends n requests and returns the distinct revisions answered.
func answers(url string, n int) []string {
	GinkgoHelper()
	return distinct(url, n, func(body string) string {
		rev, _, _ := strings.Cut(strings.TrimPrefix(body, "rev="), " ")
		return rev
	})
}

// versions sends n requests and returns the distinct versions answered.
func versions(url string, n int) []string {
	GinkgoHelper()
	return distinct(url, n, func(body string) string {
		_, v, _ := strings.Cut(body, " version=")
		v, _, _ = strings.Cut(v, " ")
		return v
	})
}

var _ = DescribeTable("Reloads under load lose no request", Label(suite.Slow),
	func(strategy v1alpha1.RolloutStrategy, reloads int) {
		p := startPool(poolOptions{strategy: strategy}, testGroup("web", 4))
		url := p.url("web")
		g := startLoad(url, 4)
		before := p.agent.Status().PIDs("web")
		for i := 2; i <= reloads+1; i++ {
			p.write("version", strconv.Itoa(i))
			st, err := p.agent.Reload(context.Background())
			Expect(err).NotTo(HaveOccurred(), "reload %d", i-1)
			Expect(st.State).To(Equal(v1alpha1.AgentReady), "status after reload %d: %+v", i-1, st)
			Expect(st.Ready).To(BeEquivalentTo(4), "status after reload %d: %+v", i-1, st)
			Expect(st.Running).To(Equal(st.Revision), "status after reload %d: %+v", i-1, st)
			after := p.agent.Status().PIDs("web")
			for slot := range after {
				Expect(after[slot]).NotTo(Equal(before[slot]), "reload %d: worker %d kept its pid", i-1, slot)
			}
			before = after
			Expect(answers(url, 20)).To(Equal([]string{st.Running}), "revisions answered after reload %d", i-1)
		}
		checkLoad(g)
	},
	Entry("SurgeFirst, 10 reloads in a row", v1alpha1.RolloutStrategy{}, 10),
	Entry("StopFirst, 3 reloads in a row", v1alpha1.RolloutStrategy{Replacement: v1alpha1.StopFirst}, 3),
)

var _ = DescribeTable("A broken revision rolls back", Label(suite.Slow),
	func(mode, reason string) {
		p := startPool(poolOptions{}, testGroup("web", 3, func(g *v1alpha1.WorkerGroup) {
			g.Readiness.TimeoutSeconds = 3
			g.StopTimeoutSeconds = 5
		}))
		url := p.url("web")
		good := p.agent.Status().Agent.Running
		g := startLoad(url, 3)

		p.write("mode", mode)
		st, err := p.agent.Reload(context.Background())
		var rerr *supervisor.ReloadError
		Expect(errors.As(err, &rerr)).To(BeTrue(), "Reload of a broken revision = %v, want a *supervisor.ReloadError", err)
		Expect(st.State).To(Equal(v1alpha1.AgentFailed), "status %+v", st)
		Expect(st.Running).To(Equal(good), "status %+v", st)
		Expect(st.Revision).NotTo(Equal(good), "status %+v", st)
		Expect(st.Message).To(ContainSubstring(reason))
		for _, w := range p.agent.Status().Workers {
			Expect(w.Revision).To(Equal(good), "worker %s/%d's revision", w.Group, w.Slot)
			Expect(w.State).To(Equal(supervisor.WorkerReady), "worker %s/%d's state", w.Group, w.Slot)
		}
		Expect(answers(url, 20)).To(Equal([]string{good}), "revisions answered after the rollback")

		By("reloading fixed code")
		p.write("mode", "")
		p.write("version", "2")
		st, err = p.agent.Reload(context.Background())
		Expect(err).NotTo(HaveOccurred(), "reload of the fixed code")
		Expect(st.State).To(Equal(v1alpha1.AgentReady), "reload of the fixed code: %+v", st)
		checkLoad(g)
	},
	Entry("exits at start", "exit", "fatal: cannot load code: syntax error on line 3"),
	Entry("never ready", "hang", "was not ready within 3s"),
)

var _ = Describe("The agent", func() {
	It("keeps a non-reloadable group's pids and connections", func() {
		p := startPool(poolOptions{},
			testGroup("web", 2),
			testGroup("gateway", 2, func(g *v1alpha1.WorkerGroup) { g.Reloadable = ptr.To(false) }))
		gatewayPids := p.agent.Status().PIDs("gateway")

		// A long-lived connection to the gateway, kept across the reloads.
		conn, err := net.Dial("tcp", p.agent.Addrs("gateway")[0].String())
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		br := bufio.NewReader(conn)
		ask := func() string {
			GinkgoHelper()
			Expect(conn.SetDeadline(time.Now().Add(wait))).To(Succeed())
			_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
			Expect(err).NotTo(HaveOccurred(), "writing on the long-lived connection")
			resp, err := http.ReadResponse(br, nil)
			Expect(err).NotTo(HaveOccurred(), "reading on the long-lived connection")
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			return string(b)
		}
		first := ask()

		for i := 2; i <= 4; i++ {
			p.write("version", strconv.Itoa(i))
			_, err := p.agent.Reload(context.Background())
			Expect(err).NotTo(HaveOccurred())
			Expect(ask()).To(Equal(first), "after reload %d, the long-lived connection's answer (same worker, same revision)", i-1)
		}
		st := p.agent.Status()
		Expect(st.PIDs("gateway")).To(Equal(gatewayPids), "gateway pids")
		for _, w := range st.Workers {
			if w.Group == "web" {
				Expect(w.Revision).To(Equal(st.Agent.Running), "web/%d's revision", w.Slot)
			}
		}
	})

	It("backs off a crash loop", func() {
		const backoff = 50 * time.Millisecond
		starts := filepath.Join(GinkgoT().TempDir(), "starts")
		p := startPool(poolOptions{backoff: backoff, noWaitForReady: true, mode: "crash"}, testGroup("web", 1, func(g *v1alpha1.WorkerGroup) {
			g.Env = append(g.Env, v1alpha1.EnvVar{Name: "TESTWORKER_STARTS", Value: starts})
		}))
		st := p.waitFor("5 restarts", func(st supervisor.Status) bool { return len(st.Workers) > 0 && st.Workers[0].Restarts >= 5 })
		if st.Agent.State == v1alpha1.AgentReady && st.Agent.Ready == st.Agent.Total {
			fmt.Fprintf(GinkgoWriter, "status: %+v\n", st)
		}
		b, err := os.ReadFile(starts)
		Expect(err).NotTo(HaveOccurred())
		var times []time.Time
		for _, line := range strings.Fields(string(b)) {
			ns, _ := strconv.ParseInt(line, 10, 64)
			times = append(times, time.Unix(0, ns))
		}
		Expect(len(times)).To(BeNumerically(">=", 5), "starts")
		// The delays double from 50ms up to 400ms: each gap between two
		// starts is at least the delay (a slow machine only makes it
		// longer).
		want := backoff
		for i := 1; i < 5; i++ {
			Expect(times[i].Sub(times[i-1])).To(BeNumerically(">=", want), "the gap before start %d", i)
			want = min(2*want, 8*backoff)
		}
		Expect(p.out.String()).To(ContainSubstring("[web/0] crashing on purpose"), "the worker's output is not passed through with its prefix")
	})

	It("lets in-flight requests finish when it stops", func() {
		p := startPool(poolOptions{}, testGroup("web", 2))
		url := p.url("web")
		type result struct {
			body string
			err  error
		}
		results := make(chan result, 3)
		for range 3 {
			go func() {
				c := &http.Client{Timeout: wait}
				resp, err := c.Get(url + "?sleep=800&log=1")
				if err != nil {
					results <- result{err: err}
					return
				}
				b, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				results <- result{string(b), err}
			}()
		}
		// Stop once the workers hold the three requests.
		Eventually(func() int { return strings.Count(p.out.String(), "handling a slow request") }).
			WithTimeout(wait).WithPolling(10*time.Millisecond).Should(BeNumerically(">=", 3), "the requests never reached the workers")
		p.agent.Stop()
		for range 3 {
			var r result
			Eventually(results).WithTimeout(wait).Should(Receive(&r))
			Expect(r.err).NotTo(HaveOccurred(), "an in-flight request")
			Expect(r.body).To(HavePrefix("rev="), "an in-flight request's answer")
		}
		var err error
		Eventually(p.runErr).WithTimeout(wait).Should(Receive(&err), "the agent did not return after the drain")
		Expect(err).NotTo(HaveOccurred(), "Run after a drain")
		p.runErr <- nil // for the cleanup
	})

	It("names the group and the address it cannot bind", func() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(l.Close)
		g := testGroup("api", 1)
		g.Listen = []v1alpha1.ListenAddress{v1alpha1.ListenAddress("tcp://" + l.Addr().String())}
		cfg := &config.Config{CodeDir: GinkgoT().TempDir(), StateDir: GinkgoT().TempDir(), ControlSocket: filepath.Join(os.TempDir(), "sr-bind-test.sock"), Groups: []v1alpha1.WorkerGroup{g}}
		config.SetDefaults(cfg, cfg.CodeDir)
		_, err = agent.New(context.Background(), agent.Options{Config: cfg})
		Expect(err).To(HaveOccurred(), "agent.New succeeded on an address in use")
		for _, want := range []string{`group "api"`, string(g.Listen[0]), "address already in use"} {
			Expect(err.Error()).To(ContainSubstring(want))
		}
	})

	// As PID 1 (here: a subreaper, the same code), the agent reaps the
	// orphans its workers leave, so no zombie piles up.
	It("reaps orphans", func() {
		pidFile := filepath.Join(GinkgoT().TempDir(), "orphan.pid")
		p := startPool(poolOptions{reapOrphans: true}, v1alpha1.WorkerGroup{
			Name: "leaver",
			// The worker starts a child that outlives it, then is replaced
			// by a long sleep (exec keeps the pid).
			Command:   []string{"sh", "-c", `sleep 1000 & echo $! > "$PID_FILE"; exec sleep 1000`},
			Env:       []v1alpha1.EnvVar{{Name: "PID_FILE", Value: pidFile}},
			Readiness: v1alpha1.Readiness{DelaySeconds: ptr.To[int32](0)},
		})
		var orphan int
		Eventually(func() int {
			b, _ := os.ReadFile(pidFile)
			orphan, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return orphan
		}).WithTimeout(wait).WithPolling(10*time.Millisecond).ShouldNot(BeZero(), "the worker never wrote its child's pid")

		By("reloading, which stops the worker: its child becomes the agent's")
		p.write("version", "2")
		_, err := p.agent.Reload(context.Background())
		Expect(err).NotTo(HaveOccurred())
		// The child is the agent's now: once it dies, only the agent can
		// reap it.
		Eventually(func() (int, error) {
			st, err := procstat.Read(orphan)
			if err != nil {
				return 0, StopTrying("the orphan is gone before it was killed").Wrap(err)
			}
			return st.PPid, nil
		}).WithTimeout(wait).WithPolling(10*time.Millisecond).Should(Equal(os.Getpid()), "the orphan's parent, the agent")

		By("killing the orphan, which the agent reaps")
		Expect(syscall.Kill(orphan, syscall.SIGKILL)).To(Succeed())
		Eventually(func() error {
			_, err := procstat.Read(orphan)
			return err
		}).WithTimeout(wait).WithPolling(20*time.Millisecond).Should(MatchError(os.ErrNotExist), "the orphan %d was never reaped", orphan)
	})

	// A standalone agent whose code directory is a mounted ConfigMap, as
	// the kubelet writes it (each file a symlink into ..data, a symlink to
	// a timestamped directory swapped on each update): the workers run a
	// copy, which an update does not change, and a reload runs the new
	// files.
	It("runs a copy of a mounted ConfigMap, and its update after a reload", func() {
		code := GinkgoT().TempDir()
		updateConfigMapVolume(code, "2026_12_02_10_00_00.000000001", map[string]string{"version": "1"})
		p := startPool(poolOptions{code: code}, testGroup("app", 2))
		first := p.agent.Status().Agent.Running
		Expect(versions(p.url("app"), 10)).To(Equal([]string{"1"}), "versions answered")

		updateConfigMapVolume(code, "2026_12_02_10_05_00.000000002", map[string]string{"version": "2"})
		Expect(versions(p.url("app"), 10)).To(Equal([]string{"1"}), "versions answered before the reload: the workers follow the live files")
		st, err := p.agent.Reload(context.Background())
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Running).NotTo(Equal(first), "the updated ConfigMap kept its revision")
		Expect(versions(p.url("app"), 10)).To(Equal([]string{"2"}), "versions answered after the reload")
	})
})

// updateConfigMapVolume writes files into dir as the kubelet updates a
// ConfigMap volume: into a new timestamped directory, then ..data swapped
// to it atomically, each top-level name a symlink into ..data, and the old
// directory removed.
func updateConfigMapVolume(dir, stamp string, files map[string]string) {
	GinkgoHelper()
	payload := ".." + stamp
	for name, content := range files {
		path := filepath.Join(dir, payload, filepath.FromSlash(name))
		Expect(os.MkdirAll(filepath.Dir(path), 0o755)).To(Succeed())
		Expect(os.WriteFile(path, []byte(content), 0o644)).To(Succeed())
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	Expect(os.Symlink(payload, filepath.Join(dir, "..data_tmp"))).To(Succeed())
	Expect(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))).To(Succeed())
	for name := range files {
		top, _, _ := strings.Cut(name, "/")
		if _, err := os.Lstat(filepath.Join(dir, top)); err != nil {
			Expect(os.Symlink(filepath.Join("..data", top), filepath.Join(dir, top))).To(Succeed())
		}
	}
	if old != "" {
		Expect(os.RemoveAll(filepath.Join(dir, old))).To(Succeed())
	}
}
