package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	. "github.com/onsi/gomega"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
)

// groupSpec builds a group whose workers report readiness with READY=1, so
// that the test decides when a worker is ready.
func groupSpec(name string, count int32, mods ...func(*v1alpha1.WorkerGroup)) v1alpha1.WorkerGroup {
	g := v1alpha1.WorkerGroup{
		Name: name, Command: []string{"./" + name}, Count: count,
		Readiness: v1alpha1.Readiness{Type: v1alpha1.ReadinessNotify, TimeoutSeconds: 60},
	}
	for _, m := range mods {
		m(&g)
	}
	v1alpha1.SetGroupDefaults(&g)
	return g
}

func notReloadable(g *v1alpha1.WorkerGroup) { g.Reloadable = ptr.To(false) }

// drainsOnly compares what GroupStatus says of drains.
var drainsOnly = cmpopts.IgnoreFields(GroupStatus{}, "Spec", "Outdated", "Count", "Listen", "Reloadable")

type harness struct {
	t     *testing.T
	os    *fakeOS
	clock *testingclock.FakeClock
	s     *Supervisor
	rec   *fakeRecorder
	runs  chan error
	log   *testworker.Output // what the supervisor logs

	mu       sync.Mutex
	behavior map[string]string // revision -> ready (default), exit, hang
}

func newHarness(t *testing.T, strategy v1alpha1.RolloutStrategy, groups ...v1alpha1.WorkerGroup) *harness {
	t.Helper()
	return newHarnessWith(t, nil, strategy, groups...)
}

// newHarnessWith is newHarness with options that mod changes.
func newHarnessWith(t *testing.T, mod func(*Options), strategy v1alpha1.RolloutStrategy, groups ...v1alpha1.WorkerGroup) *harness {
	t.Helper()
	h := &harness{
		t: t, os: newFakeOS(), clock: testingclock.NewFakeClock(time.Unix(1_000_000, 0)),
		rec: &fakeRecorder{}, runs: make(chan error, 1), behavior: map[string]string{},
		log: &testworker.Output{},
	}
	opts := Options{
		Groups: groups, Strategy: strategy, Revision: "r1", CodeDir: "/code/r1",
		OS: h.os, Clock: h.clock, Recorder: h.rec,
		Logger: slog.New(slog.NewTextHandler(h.log, nil)),
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	go func() { h.runs <- s.Run(context.Background()) }()
	t.Cleanup(func() {
		s.Stop()
		select {
		case <-s.Done():
		case <-time.After(30 * time.Second):
			t.Error("supervisor did not stop")
		}
		if t.Failed() {
			t.Logf("supervisor log:\n%s", h.log.String())
		}
	})
	return h
}

// respond answers every started process the way its revision's behavior
// says: ready (READY=1), exit (writes two lines and exits 3) or hang.
func (h *harness) respond() {
	go func() {
		for {
			select {
			case p := <-h.os.started:
				h.mu.Lock()
				b := h.behavior[revisionOf(p.spec)]
				h.mu.Unlock()
				switch b {
				case "exit":
					p.write("loading config", "fatal: syntax error in app.php line 3")
					p.exit(errors.New("exit status 3"))
				case "hang":
				default:
					p.markReady()
				}
			case <-h.s.Done():
				return
			}
		}
	}()
}

// setR2 sets how workers of revision r2 behave.
func (h *harness) setR2(behavior string) {
	h.mu.Lock()
	h.behavior["r2"] = behavior
	h.mu.Unlock()
}

// waitFor waits until cond holds for the supervisor's status, and returns
// that status.
func (h *harness) waitFor(what string, cond func(Status) bool) Status {
	h.t.Helper()
	var st Status
	NewWithT(h.t).Eventually(func() bool {
		st = h.s.Status()
		return cond(st)
	}).WithTimeout(30*time.Second).WithPolling(time.Millisecond).Should(BeTrue(),
		func() string { return fmt.Sprintf("waiting for %s; status: %+v", what, st) })
	return st
}

func (h *harness) waitReady(rev string) Status {
	h.t.Helper()
	return h.waitFor("Ready at "+rev, func(st Status) bool {
		return st.Agent.State == v1alpha1.AgentReady && st.Agent.Revision == rev && st.Agent.Ready == st.Agent.Total
	})
}

// revisions returns group/slot -> revision of the serving workers.
func revisions(st Status) map[string]string {
	m := map[string]string{}
	for _, w := range st.Workers {
		if !w.Next {
			m[fmt.Sprintf("%s/%d", w.Group, w.Slot)] = w.Revision
		}
	}
	return m
}

func pids(st Status, group string) []int {
	var out []int
	for _, w := range st.Workers {
		if w.Group == group {
			out = append(out, w.PID)
		}
	}
	return out
}

type fakeRecorder struct {
	mu       sync.Mutex
	reloads  []ReloadResult
	restarts map[string]int
	stops    []string // "group drain killed"
}

func (r *fakeRecorder) WorkerStopped(g string, drain time.Duration, killed bool) {
	r.mu.Lock()
	r.stops = append(r.stops, fmt.Sprintf("%s %v %v", g, drain, killed))
	r.mu.Unlock()
}

func (r *fakeRecorder) ReloadFinished(res ReloadResult, _ time.Duration) {
	r.mu.Lock()
	r.reloads = append(r.reloads, res)
	r.mu.Unlock()
}

func (r *fakeRecorder) WorkerRestarted(g string) {
	r.mu.Lock()
	if r.restarts == nil {
		r.restarts = map[string]int{}
	}
	r.restarts[g]++
	r.mu.Unlock()
}

func TestStartGivesEveryWorkerTheContract(t *testing.T) {
	files := []*os.File{os.Stdin}
	h := &harness{t: t, os: newFakeOS()}
	var err error
	h.s, err = New(Options{
		Groups: []v1alpha1.WorkerGroup{groupSpec("web", 2, func(g *v1alpha1.WorkerGroup) {
			g.Env = []v1alpha1.EnvVar{{Name: "APP_ENV", Value: "prod"}}
			g.Args = []string{"--port", "fd"}
			g.Listen = []v1alpha1.ListenAddress{"tcp://127.0.0.1:8080"}
		})},
		Listeners: map[string][]*os.File{"web": files},
		Revision:  "r1", CodeDir: "/code/r1", OS: h.os,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = h.s.Run(context.Background()) }()
	defer func() { h.s.Stop(); <-h.s.Done() }()
	var got []ProcessSpec
	for i := 0; i < 2; i++ {
		p := h.os.next(t)
		got = append(got, p.spec)
		p.markReady()
	}
	want := []ProcessSpec{}
	for slot := 0; slot < 2; slot++ {
		want = append(want, ProcessSpec{
			Group: "web", Slot: slot, Command: []string{"./web", "--port", "fd"}, Dir: "/code/r1",
			Env: []string{"APP_ENV=prod", "SOFTRELOAD_GROUP=web", fmt.Sprintf("SOFTRELOAD_WORKER_ID=%d", slot),
				"SOFTRELOAD_REVISION=r1", "SOFTRELOAD_CODE_DIR=/code/r1"},
			Files: files, Names: []string{"web-0"}, Notify: true,
		})
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b *os.File) bool { return a == b })); diff != "" {
		t.Errorf("process specs (-want +got):\n%s", diff)
	}
	st := h.waitFor("Ready", func(st Status) bool { return st.Agent.State == v1alpha1.AgentReady })
	if diff := cmp.Diff(v1alpha1.AgentStatus{Revision: "r1", Running: "r1", State: v1alpha1.AgentReady, Ready: 2, Total: 2}, st.Agent, cmpopts.IgnoreFields(v1alpha1.AgentStatus{}, "Groups")); diff != "" {
		t.Errorf("agent status (-want +got):\n%s", diff)
	}
}

func TestReloadOrder(t *testing.T) {
	tests := map[string]struct {
		strategy v1alpha1.RolloutStrategy
		want     []string
	}{
		"SurgeFirst starts the new worker before it stops the old one": {
			strategy: v1alpha1.RolloutStrategy{},
			want: []string{
				"start web/0 r2", "signal web/0 r1 terminated",
				"start web/1 r2", "signal web/1 r1 terminated",
				"start web/2 r2", "signal web/2 r1 terminated",
			},
		},
		"StopFirst stops the old worker before it starts the new one": {
			strategy: v1alpha1.RolloutStrategy{Replacement: v1alpha1.StopFirst},
			want: []string{
				"signal web/0 r1 terminated", "start web/0 r2",
				"signal web/1 r1 terminated", "start web/1 r2",
				"signal web/2 r1 terminated", "start web/2 r2",
			},
		},
		"maxSurge 2 replaces two at a time": {
			strategy: v1alpha1.RolloutStrategy{MaxSurge: 2},
			want: []string{
				"start web/0 r2", "start web/1 r2", "signal web/0 r1 terminated", "signal web/1 r1 terminated",
				"start web/2 r2", "signal web/2 r1 terminated",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, tc.strategy, groupSpec("web", 3))
			h.respond()
			h.waitReady("r1")
			h.os.takeLog()
			st, err := h.s.Reload(context.Background(), "r2", "/code/r2")
			if err != nil {
				t.Fatalf("Reload: %v", err)
			}
			want := v1alpha1.AgentStatus{Revision: "r2", Running: "r2", State: v1alpha1.AgentReady, Ready: 3, Total: 3,
				Groups: []v1alpha1.AgentGroupStatus{{Name: "web", Spec: v1alpha1.GroupSpecHash(groupSpec("web", 3))}}}
			if diff := cmp.Diff(want, st); diff != "" {
				t.Errorf("status after reload (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, h.os.takeLog()); diff != "" {
				t.Errorf("starts and signals (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReloadFailureRollsBack(t *testing.T) {
	tests := map[string]struct {
		strategy v1alpha1.RolloutStrategy
		behavior string
		reason   string
	}{
		"SurgeFirst, new worker exits":    {behavior: "exit", reason: "exited before it was ready: exit status 3"},
		"StopFirst, new worker exits":     {strategy: v1alpha1.RolloutStrategy{Replacement: v1alpha1.StopFirst}, behavior: "exit", reason: "exited before it was ready"},
		"SurgeFirst, new worker hangs":    {behavior: "hang", reason: "was not ready within 60s"},
		"StopFirst, new worker hangs":     {strategy: v1alpha1.RolloutStrategy{Replacement: v1alpha1.StopFirst}, behavior: "hang", reason: "was not ready within 60s"},
		"maxSurge 2, new workers exit":    {strategy: v1alpha1.RolloutStrategy{MaxSurge: 2}, behavior: "exit", reason: "exited before it was ready"},
		"SurgeFirst, program not started": {behavior: "nostart", reason: "could not start: exec: no such file"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, tc.strategy, groupSpec("web", 3), groupSpec("gateway", 1, notReloadable))
			h.respond()
			h.waitReady("r1")
			// Slot 0 takes r2 fine; from slot 1 on, r2 breaks.
			var mu sync.Mutex
			started := 0
			h.os.failStart = func(spec ProcessSpec) bool {
				if revisionOf(spec) != "r2" {
					return false
				}
				mu.Lock()
				defer mu.Unlock()
				started++
				if started == 1 && tc.strategy.MaxSurge < 2 {
					return false
				}
				if tc.behavior == "nostart" {
					return true
				}
				h.setR2(tc.behavior)
				return false
			}
			type result struct {
				st  v1alpha1.AgentStatus
				err error
			}
			reloaded := make(chan result, 1)
			go func() {
				st, err := h.s.Reload(context.Background(), "r2", "/code/r2")
				reloaded <- result{st, err}
			}()
			if tc.behavior == "hang" {
				// Slot 1's new worker starts once slot 0's is ready, so
				// the readiness deadline fails slot 1's alone.
				h.waitFor("slot 1's new worker hanging", func(st Status) bool {
					for _, w := range st.Workers {
						if w.Revision == "r2" && w.Slot == 1 && w.State == WorkerStarting {
							return true
						}
					}
					return false
				})
				h.clock.Step(61 * time.Second)
			}
			r := <-reloaded
			st, err := r.st, r.err
			var rerr *ReloadError
			if !errors.As(err, &rerr) {
				t.Fatalf("Reload error = %v, want a *ReloadError", err)
			}
			if st.State != v1alpha1.AgentFailed || st.Revision != "r2" || st.Running != "r1" {
				t.Errorf("status = %+v, want Failed for r2, running r1", st)
			}
			if !strings.Contains(st.Message, tc.reason) || !strings.Contains(st.Message, "web/") {
				t.Errorf("message %q does not name the worker and say %q", st.Message, tc.reason)
			}
			if tc.behavior == "exit" && !strings.Contains(st.Message, "fatal: syntax error in app.php line 3") {
				t.Errorf("message %q lacks the worker's last output", st.Message)
			}
			final := h.waitFor("every worker back on r1", func(st Status) bool {
				return st.Agent.Ready == 4 && len(st.Workers) == 4
			})
			want := map[string]string{"web/0": "r1", "web/1": "r1", "web/2": "r1", "gateway/0": "r1"}
			if diff := cmp.Diff(want, revisions(final)); diff != "" {
				t.Errorf("revisions after rollback (-want +got):\n%s", diff)
			}
			if final.Agent.State != v1alpha1.AgentFailed {
				t.Errorf("state after rollback = %s, want Failed until the next reload", final.Agent.State)
			}
			// Asking for the running revision (a controller's rollback)
			// replaces nothing and reports Ready again.
			h.os.takeLog()
			st, err = h.s.Reload(context.Background(), "r1", "/code/r1")
			if err != nil || st.State != v1alpha1.AgentReady || st.Revision != "r1" || st.Message != "" {
				t.Errorf("Reload to the running revision after a failure = %+v, %v; want Ready for r1", st, err)
			}
			if l := h.os.takeLog(); len(l) != 0 {
				t.Errorf("going back to the running revision touched workers: %v", l)
			}
		})
	}
}

func TestNonReloadableGroupIsNotTouched(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2), groupSpec("gateway", 2, notReloadable))
	h.respond()
	before := pids(h.waitReady("r1"), "gateway")
	h.os.takeLog()
	for _, rev := range []string{"r2", "r3"} {
		if _, err := h.s.Reload(context.Background(), rev, "/code/"+rev); err != nil {
			t.Fatal(err)
		}
	}
	st := h.s.Status()
	if diff := cmp.Diff(before, pids(st, "gateway")); diff != "" {
		t.Errorf("gateway pids (-want +got):\n%s", diff)
	}
	for _, l := range h.os.takeLog() {
		if strings.Contains(l, "gateway") {
			t.Errorf("reload touched the gateway: %s", l)
		}
	}
	want := map[string]string{"web/0": "r3", "web/1": "r3", "gateway/0": "r1", "gateway/1": "r1"}
	if diff := cmp.Diff(want, revisions(st)); diff != "" {
		t.Errorf("revisions (-want +got):\n%s", diff)
	}
}

func TestReloadsAskedDuringAReloadCoalesce(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	h.waitReady("r1")
	h.setR2("hang") // hold the reload to r2 until the test lets go
	h.os.takeLog()
	first := make(chan error, 1)
	go func() { _, err := h.s.Reload(context.Background(), "r2", "/code/r2"); first <- err }()
	h.waitFor("the reload to r2", func(st Status) bool { return st.Agent.State == v1alpha1.AgentReloading && st.Agent.Revision == "r2" })

	// r2 again joins the running reload; r3 then r4 leave one more reload,
	// to r4. RequestReload returns once the request is queued, before the
	// r2 workers are let go below.
	h.s.RequestReload("r2", "/code/r2")
	h.s.RequestReload("r3", "/code/r3")
	h.s.RequestReload("r4", "/code/r4")
	h.setR2("ready")
	h.os.mu.Lock()
	for _, p := range h.os.procs {
		if revisionOf(p.spec) == "r2" {
			p.markReady()
		}
	}
	h.os.mu.Unlock()
	if err := <-first; err != nil {
		t.Fatalf("reload to r2: %v", err)
	}
	h.waitReady("r4")
	want := []string{
		"start web/0 r2", "signal web/0 r1 terminated", "start web/1 r2", "signal web/1 r1 terminated",
		"start web/0 r4", "signal web/0 r2 terminated", "start web/1 r4", "signal web/1 r2 terminated",
	}
	if diff := cmp.Diff(want, h.os.takeLog()); diff != "" {
		t.Errorf("starts and signals (-want +got):\n%s", diff)
	}
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	if diff := cmp.Diff([]ReloadResult{ReloadSucceeded, ReloadSucceeded}, h.rec.reloads); diff != "" {
		t.Errorf("reloads recorded (-want +got):\n%s", diff)
	}
}

func TestReloadToTheRunningRevisionDoesNothing(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	h.waitReady("r1")
	h.os.takeLog()
	st, err := h.s.Reload(context.Background(), "r1", "/code/r1")
	if err != nil || st.State != v1alpha1.AgentReady {
		t.Fatalf("Reload to the running revision = %+v, %v", st, err)
	}
	if l := h.os.takeLog(); len(l) != 0 {
		t.Errorf("reload to the running revision touched workers: %v", l)
	}
}

func TestCrashedWorkerRestartsWithBackoff(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 1))
	p := h.os.next(t)
	p.markReady()
	h.waitReady("r1")
	// Each crash right after start doubles the delay: 1s, 2s, 4s, ... up
	// to 30s.
	for i, delay := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		p.exit(errors.New("exit status 1"))
		h.waitFor("backoff", func(st Status) bool {
			return st.Workers[0].State == WorkerBackoff && st.Workers[0].Restarts == int32(i+1)
		})
		h.clock.Step(delay - time.Millisecond)
		h.os.noneStarted(t)
		h.clock.Step(time.Millisecond)
		p = h.os.next(t)
	}
	p.markReady()
	st := h.waitFor("ready again", func(st Status) bool { return st.Workers[0].State == WorkerReady })
	if st.Workers[0].Restarts != 7 || st.Workers[0].PID != p.pid {
		t.Errorf("worker = %+v, want 7 restarts and pid %d", st.Workers[0], p.pid)
	}
	// A worker that ran long enough starts from the first delay again.
	h.clock.Step(10 * time.Second)
	p.exit(errors.New("exit status 1"))
	h.waitFor("backoff", func(st Status) bool { return st.Workers[0].State == WorkerBackoff })
	h.clock.Step(time.Second)
	h.os.next(t)
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	if h.rec.restarts["web"] != 8 {
		t.Errorf("restarts recorded = %d, want 8", h.rec.restarts["web"])
	}
}

// A reload starts a slot's backoff afresh: after three crashes the next
// delay would be 8s, but the worker the reload started waits only the first
// delay after its own first crash.
func TestReloadRestartsBackoff(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 1))
	p := h.os.next(t)
	p.markReady()
	h.waitReady("r1")
	for i, delay := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		p.exit(errors.New("exit status 1"))
		h.waitFor("backoff", func(st Status) bool {
			return st.Workers[0].State == WorkerBackoff && st.Workers[0].Restarts == int32(i+1)
		})
		h.clock.Step(delay)
		p = h.os.next(t)
	}
	p.markReady()
	h.waitReady("r1")

	reloaded := make(chan error, 1)
	go func() { _, err := h.s.Reload(context.Background(), "r2", "/code/r2"); reloaded <- err }()
	p = h.os.next(t)
	p.markReady()
	if err := <-reloaded; err != nil {
		t.Fatalf("Reload to r2: %v", err)
	}
	p.exit(errors.New("exit status 1"))
	h.waitFor("backoff at r2", func(st Status) bool { return st.Workers[0].State == WorkerBackoff })
	h.clock.Step(time.Second - time.Millisecond)
	h.os.noneStarted(t)
	h.clock.Step(time.Millisecond)
	if p = h.os.next(t); revisionOf(p.spec) != "r2" {
		t.Errorf("the restarted worker runs %q, want r2", revisionOf(p.spec))
	}
}

func TestStopDrainsEveryWorker(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2), groupSpec("gateway", 1, notReloadable, func(g *v1alpha1.WorkerGroup) {
		g.StopSignal = "SIGQUIT"
		g.StopTimeoutSeconds = 5
	}))
	var procs []*fakeProc
	for i := 0; i < 3; i++ {
		p := h.os.next(t)
		p.markReady()
		procs = append(procs, p)
	}
	h.waitReady("r1")
	// The gateway ignores its stop signal: it is killed after 5s.
	for _, p := range procs {
		if p.spec.Group == "gateway" {
			p.mu.Lock()
			p.ignoreTerm = true
			p.mu.Unlock()
		}
	}
	h.os.takeLog()
	h.s.Stop()
	h.waitFor("workers stopping", func(st Status) bool {
		for _, w := range st.Workers {
			if w.Group == "gateway" && w.State == WorkerStopping {
				return true
			}
		}
		return false
	})
	select {
	case <-h.s.Done():
		t.Fatal("Run returned before the gateway stopped")
	default:
	}
	h.clock.Step(5 * time.Second)
	select {
	case err := <-h.runs:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
	got := h.os.takeLog()
	want := []string{"signal web/0 r1 terminated", "signal web/1 r1 terminated", "signal gateway/0 r1 quit", "signal gateway/0 r1 killed"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
	wantGroups := []GroupStatus{
		{Name: "web", Stopped: 2},
		{Name: "gateway", Stopped: 1, Killed: 1, LastDrainSeconds: 5, SlowestDrainSeconds: 5},
	}
	if diff := cmp.Diff(wantGroups, h.s.Status().Groups, drainsOnly); diff != "" {
		t.Errorf("drains after the shutdown (-want +got):\n%s", diff)
	}
	if _, err := h.s.Reload(context.Background(), "r2", "/code/r2"); !errors.Is(err, ErrStopped) {
		t.Errorf("Reload after stop = %v, want ErrStopped", err)
	}
}

// TestDrainsAreReported: each worker told to stop counts, with the time from
// its stop signal to its exit, and whether its stop timeout ran out and it
// was killed, per group, in the status and to the recorder.
func TestDrainsAreReported(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 1, func(g *v1alpha1.WorkerGroup) {
		g.StopTimeoutSeconds = 5
	}), groupSpec("gateway", 1, notReloadable))
	h.respond()
	st := h.waitReady("r1")
	if diff := cmp.Diff([]GroupStatus{{Name: "web"}, {Name: "gateway"}}, st.Groups, drainsOnly); diff != "" {
		t.Errorf("groups before any stop (-want +got):\n%s", diff)
	}
	// reload replaces web/0 with a worker of rev; old takes 2s to drain, or
	// ignores its stop signal and is killed after its 5s stop timeout.
	reload := func(rev string, old *fakeProc, drain time.Duration) {
		t.Helper()
		old.mu.Lock()
		old.ignoreTerm = true
		old.mu.Unlock()
		reloaded := make(chan error, 1)
		go func() { _, err := h.s.Reload(context.Background(), rev, "/code/"+rev); reloaded <- err }()
		// The new worker takes the slot over when the old one is told to
		// stop.
		h.waitFor(rev+" serving web/0", func(st Status) bool {
			return revisions(st)["web/0"] == rev && st.Workers[0].State == WorkerReady
		})
		h.clock.Step(drain)
		if drain < 5*time.Second {
			old.exit(nil)
		}
		if err := <-reloaded; err != nil {
			t.Fatalf("Reload to %s: %v", rev, err)
		}
	}
	proc := func(rev string) *fakeProc {
		h.os.mu.Lock()
		defer h.os.mu.Unlock()
		for _, p := range h.os.procs {
			if p.spec.Group == "web" && revisionOf(p.spec) == rev {
				return p
			}
		}
		t.Fatalf("no web worker of %s", rev)
		return nil
	}
	reload("r2", proc("r1"), 2*time.Second)
	reload("r3", proc("r2"), 5*time.Second)
	want := []GroupStatus{
		{Name: "web", Stopped: 2, Killed: 1, LastDrainSeconds: 5, SlowestDrainSeconds: 5},
		{Name: "gateway"},
	}
	if diff := cmp.Diff(want, h.s.Status().Groups, drainsOnly); diff != "" {
		t.Errorf("groups after two reloads (-want +got):\n%s", diff)
	}
	if got := h.s.Status().Killed(); got != 1 {
		t.Errorf("Killed() = %d, want 1", got)
	}
	reload("r4", proc("r3"), 2*time.Second)
	want[0] = GroupStatus{Name: "web", Stopped: 3, Killed: 1, LastDrainSeconds: 2, SlowestDrainSeconds: 5}
	if diff := cmp.Diff(want, h.s.Status().Groups, drainsOnly); diff != "" {
		t.Errorf("groups after three reloads (-want +got):\n%s", diff)
	}
	h.rec.mu.Lock()
	defer h.rec.mu.Unlock()
	if diff := cmp.Diff([]string{"web 2s false", "web 5s true", "web 2s false"}, h.rec.stops); diff != "" {
		t.Errorf("stops recorded (-want +got):\n%s", diff)
	}
}

func TestStopDuringReload(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	h.waitReady("r1")
	h.setR2("hang")
	done := make(chan error, 1)
	go func() { _, err := h.s.Reload(context.Background(), "r2", "/code/r2"); done <- err }()
	h.waitFor("a new worker", func(st Status) bool { return len(st.Workers) == 3 })
	h.s.Stop()
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Errorf("Reload interrupted by Stop = %v, want ErrStopped", err)
	}
	<-h.s.Done()
	h.os.mu.Lock()
	defer h.os.mu.Unlock()
	for _, p := range h.os.procs {
		if p.Err() == nil {
			t.Errorf("worker %s/%d (%s) still runs after the drain", p.spec.Group, p.spec.Slot, revisionOf(p.spec))
		}
	}
}

// A worker that a reload replaced (SurgeFirst) and told to stop is still
// the supervisor's: a stop during its stop timeout waits for it, and kills
// it when the timeout runs out, before Run returns.
func TestStopWaitsForAReplacedWorker(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 1, func(g *v1alpha1.WorkerGroup) {
		g.StopTimeoutSeconds = 5
	}))
	h.respond()
	h.waitReady("r1")
	h.os.mu.Lock()
	old := h.os.procs[0]
	h.os.mu.Unlock()
	old.mu.Lock()
	old.ignoreTerm = true // it drains long requests, say
	old.mu.Unlock()
	h.os.takeLog()
	reloaded := make(chan error, 1)
	go func() { _, err := h.s.Reload(context.Background(), "r2", "/code/r2"); reloaded <- err }()
	h.waitFor("the new worker serving slot 0", func(st Status) bool {
		return len(st.Workers) == 1 && st.Workers[0].Revision == "r2" && st.Workers[0].State == WorkerReady
	})
	h.s.Stop()
	NewWithT(t).Eventually(func() string {
		select {
		case <-h.s.Done():
			StopTrying(fmt.Sprintf("Run returned while the replaced worker (pid %d) still runs", old.pid)).Now()
		default:
		}
		return h.log.String()
	}).WithTimeout(30*time.Second).WithPolling(time.Millisecond).Should(ContainSubstring("Waiting for a replaced worker to stop"),
		"the drain never waited for the replaced worker")
	select {
	case <-h.s.Done():
		t.Fatalf("Run returned while the replaced worker (pid %d) still runs", old.pid)
	default:
	}
	h.clock.Step(5 * time.Second) // its stop timeout
	select {
	case err := <-h.runs:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return once the replaced worker was killed")
	}
	if err := <-reloaded; !errors.Is(err, ErrStopped) {
		t.Errorf("Reload interrupted by Stop = %v, want ErrStopped", err)
	}
	want := []string{"start web/0 r2", "signal web/0 r1 terminated", "signal web/0 r2 terminated", "signal web/0 r1 killed"}
	if diff := cmp.Diff(want, h.os.takeLog()); diff != "" {
		t.Errorf("starts and signals (-want +got):\n%s", diff)
	}
}

// A worker that fails with enormous lines of output still gives a report
// that fits the pod's status annotation and that the controller reads.
func TestFailureReportFitsTheAnnotation(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 1))
	h.os.next(t).markReady()
	h.waitReady("r1")
	reloaded := make(chan error, 1)
	go func() { _, err := h.s.Reload(context.Background(), "r2", "/code/r2"); reloaded <- err }()
	p := h.os.next(t)
	for i := 0; i < 10; i++ {
		p.write(fmt.Sprintf("line %d: %s", i, strings.Repeat("é", 50_000)))
	}
	p.exit(errors.New("exit status 3"))
	if err := <-reloaded; err == nil || len(err.Error()) < 500_000 {
		t.Fatalf("Reload = %v, want the whole failure", err)
	}
	st := h.s.Status().Agent
	if st.State != v1alpha1.AgentFailed || len(st.Message) > v1alpha1.MaxAgentMessageBytes {
		t.Fatalf("report: state %s, a message of %d bytes", st.State, len(st.Message))
	}
	if !strings.HasPrefix(st.Message, "worker web/0 (revision r2) exited") || !strings.Contains(st.Message, " [...] ") || !strings.HasSuffix(st.Message, strings.Repeat("é", 1000)) {
		t.Errorf("the shortened message lost the reason or the last line: %.80q", st.Message)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v1alpha1.ParseAgentStatus(string(raw)); err != nil {
		t.Errorf("the controller refuses the report: %v", err)
	}
}

func TestSubscribeSeesTheReload(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 1))
	h.respond()
	h.waitReady("r1")
	updates, cancel := h.s.Subscribe()
	defer cancel()
	if st := <-updates; st.State != v1alpha1.AgentReady || st.Revision != "r1" {
		t.Fatalf("first update = %+v, want the current status", st)
	}
	// Hold the reload in Reloading until the subscriber has seen it: a
	// subscriber gets the newest status, and this one must not be missed.
	h.setR2("hang")
	go func() { _, _ = h.s.Reload(context.Background(), "r2", "/code/r2") }()
	next := func(want v1alpha1.AgentState) {
		t.Helper()
		for {
			select {
			case st := <-updates:
				if st.Revision == "r2" && st.State == want {
					return
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("no %s update for r2", want)
			}
		}
	}
	next(v1alpha1.AgentReloading)
	h.waitFor("the new worker", func(st Status) bool { return len(st.Workers) == 2 })
	h.os.mu.Lock()
	for _, p := range h.os.procs {
		if revisionOf(p.spec) == "r2" {
			p.markReady()
		}
	}
	h.os.mu.Unlock()
	next(v1alpha1.AgentReady)
}

// TestDelayReadiness: with readiness Delay, a worker is ready once it has
// stayed alive delaySeconds; one that exits first fails the reload.
func TestDelayReadiness(t *testing.T) {
	delay := func(g *v1alpha1.WorkerGroup) {
		g.Readiness = v1alpha1.Readiness{Type: v1alpha1.ReadinessDelay, DelaySeconds: ptr.To[int32](3), TimeoutSeconds: 10}
	}
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 1, delay))
	p := h.os.next(t)
	p.markReady() // READY=1 means nothing with Delay
	h.waitFor("the worker starting", func(st Status) bool { return len(st.Workers) == 1 && st.Workers[0].State == WorkerStarting })
	h.clock.Step(3*time.Second - time.Millisecond)
	if st := h.s.Status(); st.Workers[0].State != WorkerStarting {
		t.Fatalf("ready before its delay: %+v", st.Workers[0])
	}
	h.clock.Step(time.Millisecond)
	h.waitReady("r1")

	done := make(chan error, 1)
	go func() { _, err := h.s.Reload(context.Background(), "r2", "/code/r2"); done <- err }()
	p2 := h.os.next(t)
	p2.write("panic: cannot connect to the database")
	p2.exit(errors.New("exit status 2"))
	var rerr *ReloadError
	if err := <-done; !errors.As(err, &rerr) || !strings.Contains(err.Error(), "cannot connect to the database") {
		t.Fatalf("Reload = %v, want a ReloadError with the worker's output", err)
	}
	if st := h.s.Status(); st.Workers[0].PID != p.pid || st.Agent.State != v1alpha1.AgentFailed {
		t.Errorf("after the failure: %+v, want the old worker %d serving and Failed", st, p.pid)
	}
}

// TestReloadChangesGroups: a revision may change a group's command, env and
// stop signal; the old workers stop with their own signal, a code-only
// reload keeps the groups and a rollback brings the old spec back (counts,
// addresses and groups that come and go: change_test.go).
func TestReloadChangesGroups(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	h.waitReady("r1")
	v2 := groupSpec("web", 2, func(g *v1alpha1.WorkerGroup) {
		g.Command = []string{"./web-v2"}
		g.Env = []v1alpha1.EnvVar{{Name: "X", Value: "2"}}
		g.StopSignal = "SIGQUIT"
	})
	ctx := context.Background()
	if _, err := h.s.ReloadTo(ctx, Target{Revision: "r2", CodeDir: "/code/r2", Groups: []v1alpha1.WorkerGroup{v2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Reload(ctx, "r3", "/code/r3"); err != nil {
		t.Fatal(err)
	}
	h.os.takeLog()

	// r5 breaks on slot 1: slot 0 goes back to r3, with r2's spec.
	h.os.failStart = func(spec ProcessSpec) bool { return revisionOf(spec) == "r5" && spec.Slot == 1 }
	v5 := groupSpec("web", 2, func(g *v1alpha1.WorkerGroup) { g.Command = []string{"./web-v5"} })
	if _, err := h.s.ReloadTo(ctx, Target{Revision: "r5", CodeDir: "/code/r5", Groups: []v1alpha1.WorkerGroup{v5}}); err == nil {
		t.Fatal("the reload to r5 succeeded")
	}
	h.waitFor("r3 everywhere", func(st Status) bool { return st.Agent.Ready == 2 && len(st.Workers) == 2 })
	h.os.mu.Lock()
	type started struct {
		Rev     string
		Slot    int
		Command []string
		X       string
	}
	var got []started
	for _, p := range h.os.procs {
		x := ""
		for _, e := range p.spec.Env {
			if v, ok := strings.CutPrefix(e, "X="); ok {
				x = v
			}
		}
		got = append(got, started{revisionOf(p.spec), p.spec.Slot, p.spec.Command, x})
	}
	h.os.mu.Unlock()
	want := []started{
		{"r1", 0, []string{"./web"}, ""}, {"r1", 1, []string{"./web"}, ""},
		{"r2", 0, []string{"./web-v2"}, "2"}, {"r2", 1, []string{"./web-v2"}, "2"},
		{"r3", 0, []string{"./web-v2"}, "2"}, {"r3", 1, []string{"./web-v2"}, "2"},
		{"r5", 0, []string{"./web-v5"}, ""},
		{"r3", 0, []string{"./web-v2"}, "2"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("workers started (-want +got):\n%s", diff)
	}
	// r2's workers stopped with r2's stop signal when r3 replaced them.
	log := strings.Join(h.os.takeLog(), "\n")
	if !strings.Contains(log, "signal web/0 r5 terminated") || !strings.Contains(log, "signal web/0 r3 quit") {
		t.Errorf("signals:\n%s", log)
	}
}
