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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	"github.com/softreload/softreload/agent"
	"github.com/softreload/softreload/agent/config"
	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/loopback"
)

func TestMain(m *testing.M) {
	process.RunShimIfAsked()
	testworker.RunIfAsked()
	os.Exit(m.Run())
}

// wait is the generous deadline of every wait for an event in these tests:
// they never depend on how fast the machine is.
const wait = 2 * time.Minute

// testGroup is a group of test workers (this test binary run again) on a
// free loopback port, ready when they say READY=1.
func testGroup(t *testing.T, name string, count int32, mods ...func(*v1alpha1.WorkerGroup)) v1alpha1.WorkerGroup {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	g := v1alpha1.WorkerGroup{
		Name:    name,
		Command: []string{self},
		Count:   count,
		// The race detector waits a second at exit unless told not to.
		Env:       []v1alpha1.EnvVar{{Name: testworker.Env, Value: "1"}, {Name: "GORACE", Value: "atexit_sleep_ms=0"}},
		Listen:    []v1alpha1.ListenAddress{v1alpha1.ListenAddress(fmt.Sprintf("tcp://127.0.0.1:%d", loopback.FreePort(t)))},
		Readiness: v1alpha1.Readiness{Type: v1alpha1.ReadinessNotify, TimeoutSeconds: 120},
	}
	for _, m := range mods {
		m(&g)
	}
	return g
}

// pool is a running agent over a code directory the test edits.
type pool struct {
	t      *testing.T
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
	// code, if set, is the code directory, written by the test; otherwise
	// startPool makes one with version 1 and mode.
	code string
}

func startPool(t *testing.T, o poolOptions, groups ...v1alpha1.WorkerGroup) *pool {
	t.Helper()
	p := &pool{t: t, code: o.code, out: &testworker.Output{}, runErr: make(chan error, 1), groups: groups}
	if p.code == "" {
		p.code = t.TempDir()
		p.write("version", "1")
		p.write("mode", o.mode)
	}
	sock, err := os.MkdirTemp("", "sr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sock) })
	cfg := &config.Config{
		CodeDir: p.code, StateDir: t.TempDir(), ControlSocket: filepath.Join(sock, "c.sock"),
		Groups: groups, Strategy: o.strategy,
	}
	config.SetDefaults(cfg, p.code)
	if errs := config.Validate(cfg); len(errs) > 0 {
		t.Fatalf("test config: %v", errs.ToAggregate())
	}
	backoff := o.backoff
	if backoff == 0 {
		backoff = 100 * time.Millisecond
	}
	a, err := agent.New(context.Background(), agent.Options{
		Config: cfg, Stdout: p.out, Stderr: p.out,
		Logger:         slog.New(slog.NewTextHandler(p.out, nil)),
		BackoffInitial: backoff, BackoffMax: 8 * backoff,
		ReapOrphans: o.reapOrphans,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.agent = a
	go func() { p.runErr <- a.Run(context.Background()) }()
	t.Cleanup(func() {
		a.Stop()
		select {
		case err := <-p.runErr:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(wait):
			t.Error("the agent did not stop")
		}
		if t.Failed() || os.Getenv("SOFTRELOAD_TEST_OUTPUT") != "" {
			t.Logf("agent and worker output:\n%s", p.out.String())
		}
	})
	if !o.noWaitForReady {
		p.waitFor("every worker ready", func(st supervisor.Status) bool {
			return st.Agent.State == v1alpha1.AgentReady && st.Agent.Ready == st.Agent.Total
		})
	}
	return p
}

// write changes a file of the code directory.
func (p *pool) write(name, content string) {
	p.t.Helper()
	if err := os.WriteFile(filepath.Join(p.code, name), []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pool) waitFor(what string, cond func(supervisor.Status) bool) supervisor.Status {
	p.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := p.agent.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s; status: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *pool) url(group string) string {
	return "http://" + p.agent.Addrs(group)[0].String() + "/"
}

// loadgen sends requests on new connections from several clients until
// stopped, and counts every failure.
type loadgen struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
	finish     func()
}

func startLoad(t *testing.T, url string, clients int) *loadgen {
	l := &loadgen{stop: make(chan struct{})}
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < clients; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err.Error())
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
				// Pace the clients a little, so that closed connections do
				// not exhaust the loopback's ephemeral ports.
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(l.stop) }); l.wg.Wait() })
	l.finish = func() { once.Do(func() { close(l.stop) }); l.wg.Wait() }
	return l
}

// check stops the load and fails the test if any request failed.
func (l *loadgen) check(t *testing.T) {
	t.Helper()
	l.finish()
	if l.failed.Load() > 0 {
		t.Errorf("%d of %d requests failed, e.g. %v", l.failed.Load(), l.failed.Load()+l.ok.Load(), l.errs)
	}
	if l.ok.Load() == 0 {
		t.Error("no request succeeded")
	}
	t.Logf("%d requests, %d failed", l.ok.Load()+l.failed.Load(), l.failed.Load())
}

// answers sends n requests and returns the distinct revisions answered.
func answers(t *testing.T, url string, n int) []string {
	t.Helper()
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		rev, _, _ := strings.Cut(strings.TrimPrefix(string(b), "rev="), " ")
		seen[rev] = true
	}
	var out []string
	for r := range seen {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func TestReloadsUnderLoadLoseNoRequest(t *testing.T) {
	tests := map[string]struct {
		strategy v1alpha1.RolloutStrategy
		reloads  int
	}{
		"SurgeFirst, 10 reloads in a row": {reloads: 10},
		"StopFirst, 3 reloads in a row":   {strategy: v1alpha1.RolloutStrategy{Replacement: v1alpha1.StopFirst}, reloads: 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := startPool(t, poolOptions{strategy: tc.strategy}, testGroup(t, "web", 4))
			url := p.url("web")
			load := startLoad(t, url, 4)
			before := p.agent.Status().PIDs("web")
			for i := 2; i <= tc.reloads+1; i++ {
				p.write("version", strconv.Itoa(i))
				st, err := p.agent.Reload(context.Background())
				if err != nil {
					t.Fatalf("reload %d: %v", i-1, err)
				}
				if st.State != v1alpha1.AgentReady || st.Ready != 4 || st.Running != st.Revision {
					t.Fatalf("status after reload %d = %+v", i-1, st)
				}
				after := p.agent.Status().PIDs("web")
				for slot := range after {
					if after[slot] == before[slot] {
						t.Errorf("reload %d: worker %d kept pid %d", i-1, slot, after[slot])
					}
				}
				before = after
				if diff := cmp.Diff([]string{st.Running}, answers(t, url, 20)); diff != "" {
					t.Errorf("revisions answered after reload %d (-want +got):\n%s", i-1, diff)
				}
			}
			load.check(t)
		})
	}
}

func TestBrokenRevisionRollsBack(t *testing.T) {
	tests := map[string]struct {
		mode   string
		reason string
	}{
		"exits at start": {mode: "exit", reason: "fatal: cannot load code: syntax error on line 3"},
		"never ready":    {mode: "hang", reason: "was not ready within 3s"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := startPool(t, poolOptions{}, testGroup(t, "web", 3, func(g *v1alpha1.WorkerGroup) {
				g.Readiness.TimeoutSeconds = 3
				g.StopTimeoutSeconds = 5
			}))
			url := p.url("web")
			good := p.agent.Status().Agent.Running
			load := startLoad(t, url, 3)

			p.write("mode", tc.mode)
			st, err := p.agent.Reload(context.Background())
			var rerr *supervisor.ReloadError
			if !errors.As(err, &rerr) {
				t.Fatalf("Reload of a broken revision = %v, want a *supervisor.ReloadError", err)
			}
			if st.State != v1alpha1.AgentFailed || st.Running != good || st.Revision == good {
				t.Errorf("status = %+v, want Failed, running %s", st, good)
			}
			if !strings.Contains(st.Message, tc.reason) {
				t.Errorf("message %q does not say %q", st.Message, tc.reason)
			}
			final := p.agent.Status()
			for _, w := range final.Workers {
				if w.Revision != good || w.State != supervisor.WorkerReady {
					t.Errorf("worker %s/%d: %s %s, want Ready on %s", w.Group, w.Slot, w.Revision, w.State, good)
				}
			}
			if diff := cmp.Diff([]string{good}, answers(t, url, 20)); diff != "" {
				t.Errorf("revisions answered after the rollback (-want +got):\n%s", diff)
			}

			// Fixed code reloads fine.
			p.write("mode", "")
			p.write("version", "2")
			if st, err := p.agent.Reload(context.Background()); err != nil || st.State != v1alpha1.AgentReady {
				t.Fatalf("reload of the fixed code = %+v, %v", st, err)
			}
			load.check(t)
		})
	}
}

func TestNonReloadableGroupKeepsPidsAndConnections(t *testing.T) {
	p := startPool(t, poolOptions{},
		testGroup(t, "web", 2),
		testGroup(t, "gateway", 2, func(g *v1alpha1.WorkerGroup) { g.Reloadable = ptr.To(false) }))
	gatewayPids := p.agent.Status().PIDs("gateway")

	// A long-lived connection to the gateway, kept across the reloads.
	conn, err := net.Dial("tcp", p.agent.Addrs("gateway")[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	ask := func() string {
		t.Helper()
		if err := conn.SetDeadline(time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: gateway\r\n\r\n"); err != nil {
			t.Fatalf("writing on the long-lived connection: %v", err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("reading on the long-lived connection: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	first := ask()

	for i := 2; i <= 4; i++ {
		p.write("version", strconv.Itoa(i))
		if _, err := p.agent.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := ask(); got != first {
			t.Errorf("after reload %d the long-lived connection answered %q, want %q (same worker, same revision)", i-1, got, first)
		}
	}
	st := p.agent.Status()
	if diff := cmp.Diff(gatewayPids, st.PIDs("gateway")); diff != "" {
		t.Errorf("gateway pids (-want +got):\n%s", diff)
	}
	for _, w := range st.Workers {
		if w.Group == "web" && w.Revision != st.Agent.Running {
			t.Errorf("web/%d runs %s, want %s", w.Slot, w.Revision, st.Agent.Running)
		}
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	const backoff = 200 * time.Millisecond
	starts := filepath.Join(t.TempDir(), "starts")
	p := startPool(t, poolOptions{backoff: backoff, noWaitForReady: true, mode: "crash"}, testGroup(t, "web", 1, func(g *v1alpha1.WorkerGroup) {
		g.Env = append(g.Env, v1alpha1.EnvVar{Name: "TESTWORKER_STARTS", Value: starts})
	}))
	st := p.waitFor("5 restarts", func(st supervisor.Status) bool { return len(st.Workers) > 0 && st.Workers[0].Restarts >= 5 })
	if st.Agent.State == v1alpha1.AgentReady && st.Agent.Ready == st.Agent.Total {
		t.Logf("status: %+v", st)
	}
	b, err := os.ReadFile(starts)
	if err != nil {
		t.Fatal(err)
	}
	var times []time.Time
	for _, line := range strings.Fields(string(b)) {
		ns, _ := strconv.ParseInt(line, 10, 64)
		times = append(times, time.Unix(0, ns))
	}
	if len(times) < 5 {
		t.Fatalf("want at least 5 starts, got %d", len(times))
	}
	// The delays double from 200ms up to 1.6s: each gap between two
	// starts is at least the delay (a slow machine only makes it longer).
	want := backoff
	for i := 1; i < 5; i++ {
		if gap := times[i].Sub(times[i-1]); gap < want {
			t.Errorf("start %d came %v after the previous one, want at least %v", i, gap, want)
		}
		want = min(2*want, 8*backoff)
	}
	if !strings.Contains(p.out.String(), "[web/0] crashing on purpose") {
		t.Errorf("the worker's output is not passed through with its prefix:\n%s", p.out.String())
	}
}

func TestStopLetsInFlightRequestsFinish(t *testing.T) {
	p := startPool(t, poolOptions{}, testGroup(t, "web", 2))
	url := p.url("web")
	type result struct {
		body string
		err  error
	}
	results := make(chan result, 3)
	for i := 0; i < 3; i++ {
		go func() {
			c := &http.Client{Timeout: wait}
			resp, err := c.Get(url + "?sleep=1500&log=1")
			if err != nil {
				results <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{string(b), err}
		}()
	}
	// Stop once the workers hold the three requests.
	deadline := time.Now().Add(wait)
	for strings.Count(p.out.String(), "handling a slow request") < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the requests never reached the workers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.agent.Stop()
	for i := 0; i < 3; i++ {
		r := <-results
		if r.err != nil || !strings.HasPrefix(r.body, "rev=") {
			t.Errorf("in-flight request: %q, %v", r.body, r.err)
		}
	}
	select {
	case err := <-p.runErr:
		if err != nil {
			t.Errorf("Run = %v, want nil after a drain", err)
		}
		p.runErr <- nil // for the cleanup
	case <-time.After(wait):
		t.Fatal("the agent did not return after the drain")
	}
}

func TestBindFailureNamesGroupAndAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	g := testGroup(t, "api", 1)
	g.Listen = []v1alpha1.ListenAddress{v1alpha1.ListenAddress("tcp://" + l.Addr().String())}
	cfg := &config.Config{CodeDir: t.TempDir(), StateDir: t.TempDir(), ControlSocket: filepath.Join(os.TempDir(), "sr-bind-test.sock"), Groups: []v1alpha1.WorkerGroup{g}}
	config.SetDefaults(cfg, cfg.CodeDir)
	_, err = agent.New(context.Background(), agent.Options{Config: cfg})
	if err == nil {
		t.Fatal("agent.New succeeded on an address in use")
	}
	for _, want := range []string{`group "api"`, string(g.Listen[0]), "address already in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestOrphansAreReaped: as PID 1 (here: a subreaper, the same code), the
// agent reaps the orphans its workers leave, so no zombie piles up.
func TestOrphansAreReaped(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "orphan.pid")
	p := startPool(t, poolOptions{reapOrphans: true}, v1alpha1.WorkerGroup{
		Name: "leaver",
		// The worker starts a child that outlives it, then is replaced by
		// a long sleep (exec keeps the pid).
		Command:   []string{"sh", "-c", `sleep 1000 & echo $! > "$PID_FILE"; exec sleep 1000`},
		Env:       []v1alpha1.EnvVar{{Name: "PID_FILE", Value: pidFile}},
		Readiness: v1alpha1.Readiness{DelaySeconds: ptr.To[int32](0)},
	})
	var orphan int
	deadline := time.Now().Add(wait)
	for orphan == 0 {
		b, _ := os.ReadFile(pidFile)
		orphan, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if time.Now().After(deadline) {
			t.Fatal("the worker never wrote its child's pid")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Reloading stops the worker; its child becomes the agent's.
	p.write("version", "2")
	if _, err := p.agent.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The child is the agent's now: once it dies, only the agent can reap
	// it.
	for ppid := 0; ppid != os.Getpid(); {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan))
		if err != nil {
			t.Fatalf("the orphan is gone before it was killed: %v", err)
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		ppid, _ = strconv.Atoi(f[1])
		if time.Now().After(deadline) {
			t.Fatalf("the orphan's parent is %d, not the agent %d", ppid, os.Getpid())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(orphan, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", orphan))
		if err != nil {
			return // reaped
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orphan %d was never reaped: %s", orphan, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A standalone agent whose code directory is a mounted ConfigMap, as the
// kubelet writes it (each file a symlink into ..data, a symlink to a
// timestamped directory swapped on each update): the workers run a copy,
// which an update does not change, and a reload runs the new files.
func TestCodeDirIsAMountedConfigMap(t *testing.T) {
	code := t.TempDir()
	updateConfigMapVolume(t, code, "2026_12_02_10_00_00.000000001", map[string]string{"version": "1"})
	p := startPool(t, poolOptions{code: code}, testGroup(t, "app", 2))
	first := p.agent.Status().Agent.Running
	if got := versions(t, p.url("app"), 10); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("versions answered: %v, want [1]", got)
	}

	updateConfigMapVolume(t, code, "2026_12_02_10_05_00.000000002", map[string]string{"version": "2"})
	if got := versions(t, p.url("app"), 10); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("versions answered before the reload: %v, want [1]: the workers follow the live files", got)
	}
	st, err := p.agent.Reload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Running == first {
		t.Fatalf("the updated ConfigMap kept revision %s", first)
	}
	if got := versions(t, p.url("app"), 10); !slices.Equal(got, []string{"2"}) {
		t.Fatalf("versions answered after the reload: %v, want [2]", got)
	}
}

// versions sends n requests and returns the distinct versions answered.
func versions(t *testing.T, url string, n int) []string {
	t.Helper()
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_, v, _ := strings.Cut(string(b), " version=")
		v, _, _ = strings.Cut(v, " ")
		seen[v] = true
	}
	out := slices.Collect(maps.Keys(seen))
	slices.Sort(out)
	return out
}

// updateConfigMapVolume writes files into dir as the kubelet updates a
// ConfigMap volume: into a new timestamped directory, then ..data swapped
// to it atomically, each top-level name a symlink into ..data, and the old
// directory removed.
func updateConfigMapVolume(t *testing.T, dir, stamp string, files map[string]string) {
	t.Helper()
	payload := ".." + stamp
	for name, content := range files {
		path := filepath.Join(dir, payload, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Symlink(payload, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		top, _, _ := strings.Cut(name, "/")
		if _, err := os.Lstat(filepath.Join(dir, top)); err != nil {
			if err := os.Symlink(filepath.Join("..data", top), filepath.Join(dir, top)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}
