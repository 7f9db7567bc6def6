package supervisor

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/softreload/softreload/api/v1alpha1"
)

// fakeSockets binds addresses as files of /dev/null, and records binds and
// closes in the fake OS's log, among the starts and signals.
type fakeSockets struct {
	t  *testing.T
	os *fakeOS

	mu    sync.Mutex
	files map[v1alpha1.ListenAddress]*os.File
}

func (f *fakeSockets) BindAddress(a v1alpha1.ListenAddress) (*os.File, error) {
	file, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.files[a] = file
	f.mu.Unlock()
	f.os.record("bind " + string(a))
	return file, nil
}

func (f *fakeSockets) Unbind(a v1alpha1.ListenAddress) error {
	f.os.record("close " + string(a))
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files[a].Close()
}

// reloadTo reloads h to revision rev (code in /code/rev) with groups, and
// returns the agent's status, what was started, signalled, bound and
// closed, and the reload's error.
func (h *harness) reloadTo(rev string, groups ...v1alpha1.WorkerGroup) (st v1alpha1.AgentStatus, log []string, err error) {
	h.t.Helper()
	h.os.takeLog()
	st, err = h.s.ReloadTo(context.Background(), Target{Revision: rev, CodeDir: "/code/" + rev, Groups: groups})
	return st, h.os.takeLog(), err
}

func TestCountChangesInPlace(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	before := pids(h.waitReady("r1"), "web")

	st, log, err := h.reloadTo("r1", groupSpec("web", 4))
	if err != nil || st.State != v1alpha1.AgentReady || st.Ready != 4 || st.Total != 4 {
		t.Fatalf("count 2 to 4: %+v, %v; want Ready 4/4", st, err)
	}
	if diff := cmp.Diff([]string{"start web/2 r1", "start web/3 r1"}, log); diff != "" {
		t.Errorf("count 2 to 4, the same code: only the new slots start (-want +got):\n%s", diff)
	}
	if got := pids(h.s.Status(), "web"); !cmp.Equal(before, got[:2]) {
		t.Errorf("count 2 to 4: the pids of slots 0 and 1 went from %v to %v", before, got[:2])
	}

	st, log, err = h.reloadTo("r1", groupSpec("web", 1))
	if err != nil || st.State != v1alpha1.AgentReady || st.Ready != 1 || st.Total != 1 {
		t.Fatalf("count 4 to 1: %+v, %v; want Ready 1/1", st, err)
	}
	if diff := cmp.Diff([]string{"signal web/1 r1 terminated", "signal web/2 r1 terminated", "signal web/3 r1 terminated"}, log); diff != "" {
		t.Errorf("count 4 to 1: the surplus stops (-want +got):\n%s", diff)
	}
	if got := pids(h.s.Status(), "web"); !cmp.Equal(before[:1], got) {
		t.Errorf("count 4 to 1: pids %v, want slot 0's %v", got, before[:1])
	}

	st, log, err = h.reloadTo("r2", groupSpec("web", 2))
	if err != nil || st.State != v1alpha1.AgentReady || st.Ready != 2 {
		t.Fatalf("count 1 to 2 with new code: %+v, %v", st, err)
	}
	if diff := cmp.Diff([]string{"start web/0 r2", "signal web/0 r1 terminated", "start web/1 r2"}, log); diff != "" {
		t.Errorf("count 1 to 2 with new code: slot 0 replaced, then slot 1 started (-want +got):\n%s", diff)
	}
}

func TestGroupsComeAndGo(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	before := pids(h.waitReady("r1"), "web")

	st, log, err := h.reloadTo("r1", groupSpec("web", 2), groupSpec("api", 2))
	if err != nil || st.State != v1alpha1.AgentReady || st.Ready != 4 || st.Total != 4 {
		t.Fatalf("api added: %+v, %v; want Ready 4/4", st, err)
	}
	if diff := cmp.Diff([]string{"start api/0 r1", "start api/1 r1"}, log); diff != "" {
		t.Errorf("api added (-want +got):\n%s", diff)
	}
	want := []v1alpha1.AgentGroupStatus{
		{Name: "web", Spec: v1alpha1.GroupSpecHash(groupSpec("web", 2))},
		{Name: "api", Spec: v1alpha1.GroupSpecHash(groupSpec("api", 2))},
	}
	if diff := cmp.Diff(want, st.Groups); diff != "" {
		t.Errorf("the report's groups (-want +got):\n%s", diff)
	}

	st, log, err = h.reloadTo("r1", groupSpec("web", 2))
	if err != nil || st.State != v1alpha1.AgentReady || st.Ready != 2 || st.Total != 2 || len(st.Groups) != 1 {
		t.Fatalf("api removed: %+v, %v; want Ready 2/2, one group", st, err)
	}
	if diff := cmp.Diff([]string{"signal api/0 r1 terminated", "signal api/1 r1 terminated"}, log); diff != "" {
		t.Errorf("api removed (-want +got):\n%s", diff)
	}
	if got := pids(h.s.Status(), "web"); !cmp.Equal(before, got) {
		t.Errorf("web's pids went from %v to %v", before, got)
	}
}

func TestNewSlotsThatFailRollBack(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	good := h.waitReady("r1")
	h.os.failStart = func(spec ProcessSpec) bool { return spec.Slot == 2 || spec.Group == "api" }

	for name, groups := range map[string][]v1alpha1.WorkerGroup{
		"count 2 to 3": {groupSpec("web", 3)},
		"api added":    {groupSpec("web", 2), groupSpec("api", 1)},
	} {
		st, _, err := h.reloadTo("r1", groups...)
		if err == nil || st.State != v1alpha1.AgentFailed || st.Total != 2 || st.Ready != 2 {
			t.Errorf("%s with a worker that cannot start: %+v, %v; want Failed, 2/2", name, st, err)
		}
		got := h.s.Status()
		if diff := cmp.Diff(good.Workers, got.Workers); diff != "" {
			t.Errorf("%s: the workers after the rollback (-want +got):\n%s", name, diff)
		}
		if diff := cmp.Diff(good.Agent.Groups, got.Agent.Groups); diff != "" {
			t.Errorf("%s: the groups after the rollback (-want +got):\n%s", name, diff)
		}
	}
}

func TestListenChangesReplaceTheWorkers(t *testing.T) {
	web := func(listen ...v1alpha1.ListenAddress) v1alpha1.WorkerGroup {
		return groupSpec("web", 2, func(g *v1alpha1.WorkerGroup) { g.Listen = listen })
	}
	var sockets *fakeSockets
	a, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h := newHarnessWith(t, func(o *Options) {
		sockets = &fakeSockets{t: t, os: o.OS.(*fakeOS), files: map[v1alpha1.ListenAddress]*os.File{}}
		o.Sockets = sockets
		o.Listeners = map[string][]*os.File{"web": {a}}
	}, v1alpha1.RolloutStrategy{}, web("tcp://127.0.0.1:8080"))
	h.respond()
	h.waitReady("r1")

	st, log, err := h.reloadTo("r1", web("tcp://127.0.0.1:8080", "unix:///run/b.sock"))
	if err != nil || st.State != v1alpha1.AgentReady {
		t.Fatalf("address added: %+v, %v", st, err)
	}
	want := []string{
		"bind unix:///run/b.sock",
		"start web/0 r1", "signal web/0 r1 terminated",
		"start web/1 r1", "signal web/1 r1 terminated",
	}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("address added: bound, then the workers replaced (-want +got):\n%s", diff)
	}
	h.os.mu.Lock()
	last := h.os.procs[len(h.os.procs)-1].spec
	h.os.mu.Unlock()
	sockets.mu.Lock()
	b := sockets.files["unix:///run/b.sock"]
	sockets.mu.Unlock()
	if diff := cmp.Diff([]*os.File{a, b}, last.Files, cmp.Comparer(func(x, y *os.File) bool { return x == y })); diff != "" {
		t.Errorf("the new worker's sockets: the kept one, then the new one (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"web-0", "web-1"}, last.Names); diff != "" {
		t.Errorf("the new worker's socket names (-want +got):\n%s", diff)
	}

	st, log, err = h.reloadTo("r1", web("tcp://127.0.0.1:8080"))
	if err != nil || st.State != v1alpha1.AgentReady {
		t.Fatalf("address removed: %+v, %v", st, err)
	}
	want = []string{
		"start web/0 r1", "signal web/0 r1 terminated",
		"start web/1 r1", "signal web/1 r1 terminated",
		"close unix:///run/b.sock",
	}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("address removed: the workers replaced, then the address closed (-want +got):\n%s", diff)
	}
}

func TestNonReloadableGroupKeepsItsSpec(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 1), groupSpec("gateway", 1, notReloadable))
	h.respond()
	gateway := pids(h.waitReady("r1"), "gateway")
	changed := groupSpec("gateway", 2, notReloadable, func(g *v1alpha1.WorkerGroup) { g.Command = []string{"./gateway-v2"} })

	st, log, err := h.reloadTo("r2", groupSpec("web", 1), changed)
	if err != nil || st.State != v1alpha1.AgentReady || st.Running != "r2" {
		t.Fatalf("gateway changed: %+v, %v; want Ready at r2", st, err)
	}
	if diff := cmp.Diff([]string{"start web/0 r2", "signal web/0 r1 terminated"}, log); diff != "" {
		t.Errorf("gateway changed: only web reloads (-want +got):\n%s", diff)
	}
	want := []v1alpha1.AgentGroupStatus{
		{Name: "web", Spec: v1alpha1.GroupSpecHash(groupSpec("web", 1))},
		{Name: "gateway", Spec: v1alpha1.GroupSpecHash(groupSpec("gateway", 1, notReloadable)), Outdated: v1alpha1.GroupSpecChanged},
	}
	if diff := cmp.Diff(want, st.Groups); diff != "" {
		t.Errorf("the report's groups (-want +got):\n%s", diff)
	}
	if got := pids(h.s.Status(), "gateway"); !cmp.Equal(gateway, got) {
		t.Errorf("gateway pids went from %v to %v", gateway, got)
	}

	st, log, _ = h.reloadTo("r3", groupSpec("web", 1))
	if len(log) != 2 || st.State != v1alpha1.AgentReady || len(st.Groups) != 2 || st.Groups[1].Outdated != v1alpha1.GroupRemoved {
		t.Errorf("gateway removed: %+v, %v; want web reloaded alone, the gateway kept and reported Removed", st, log)
	}

	// reloadable toggled: from this reload on.
	st, log, _ = h.reloadTo("r4", groupSpec("web", 1, notReloadable))
	if len(log) != 0 || st.State != v1alpha1.AgentReady {
		t.Errorf("web made not reloadable: %+v, %v; want no worker touched", st, log)
	}
	st, log, _ = h.reloadTo("r5", groupSpec("web", 1))
	if diff := cmp.Diff([]string{"start web/0 r5", "signal web/0 r3 terminated"}, log); diff != "" || st.State != v1alpha1.AgentReady {
		t.Errorf("web made reloadable again: %+v; its workers reload (-want +got):\n%s", st, diff)
	}
}

// A crashed worker waiting for its restart in a slot that a smaller count
// stops is not restarted when its backoff runs out.
func TestSurplusSlotInBackoffStaysStopped(t *testing.T) {
	h := newHarness(t, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.os.next(t).markReady()
	crashing := h.os.next(t)
	crashing.markReady()
	h.waitReady("r1")
	crashing.exit(errors.New("exit status 1"))
	h.waitFor("backoff", func(st Status) bool { return st.Workers[1].State == WorkerBackoff })

	st, log, err := h.reloadTo("r1", groupSpec("web", 1))
	if err != nil || st.Total != 1 || len(log) != 0 {
		t.Fatalf("count 2 to 1 with slot 1 in backoff: %+v, %v, %v; want 1 slot and nothing signalled", st, log, err)
	}
	h.clock.Step(time.Minute)
	h.os.noneStarted(t)
}

// A pod's revisions name their groups too: two revisions of one code, in
// one directory, say so with the same Code, and a count change between them
// keeps the running workers, which keep the revision they started with.
func TestCountChangeOfAnotherRevisionOfTheSameCode(t *testing.T) {
	h := newHarnessWith(t, func(o *Options) { o.Code = "code-1" }, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	before := pids(h.waitReady("r1"), "web")
	reload := func(rev, dir, code string, groups ...v1alpha1.WorkerGroup) (v1alpha1.AgentStatus, []string) {
		t.Helper()
		h.os.takeLog()
		st, err := h.s.ReloadTo(context.Background(), Target{Revision: rev, CodeDir: dir, Code: code, Groups: groups})
		if err != nil || st.State != v1alpha1.AgentReady || st.Revision != rev || st.Ready != st.Total {
			t.Fatalf("reload to %s: %+v, %v; want Ready", rev, st, err)
		}
		return st, h.os.takeLog()
	}

	st, log := reload("r2", "/code/r1", "code-1", groupSpec("web", 4))
	if diff := cmp.Diff([]string{"start web/2 r2", "start web/3 r2"}, log); diff != "" {
		t.Errorf("count 2 to 4, the same code: only the new slots start (-want +got):\n%s", diff)
	}
	if st.Total != 4 {
		t.Errorf("count 2 to 4: %d workers", st.Total)
	}
	if got := pids(h.s.Status(), "web"); !cmp.Equal(before, got[:2]) {
		t.Errorf("count 2 to 4: the pids of slots 0 and 1 went from %v to %v", before, got[:2])
	}
	want := map[string]string{"web/0": "r1", "web/1": "r1", "web/2": "r2", "web/3": "r2"}
	if diff := cmp.Diff(want, revisions(h.s.Status())); diff != "" {
		t.Errorf("each worker's revision, the one it started with (-want +got):\n%s", diff)
	}

	_, log = reload("r3", "/code/r1", "code-1", groupSpec("web", 1))
	if diff := cmp.Diff([]string{"signal web/1 r1 terminated", "signal web/2 r2 terminated", "signal web/3 r2 terminated"}, log); diff != "" {
		t.Errorf("count 4 to 1: the surplus stops (-want +got):\n%s", diff)
	}
	if got := pids(h.s.Status(), "web"); !cmp.Equal(before[:1], got) {
		t.Errorf("count 4 to 1: pids %v, want slot 0's %v", got, before[:1])
	}

	// The same Code in another directory, or another Code (a restart asked
	// of the same files) replaces the workers.
	_, log = reload("r4", "/code/r4", "code-1", groupSpec("web", 1))
	if diff := cmp.Diff([]string{"start web/0 r4", "signal web/0 r1 terminated"}, log); diff != "" {
		t.Errorf("the same code in another directory (-want +got):\n%s", diff)
	}
	_, log = reload("r5", "/code/r4", "code-2", groupSpec("web", 1))
	if diff := cmp.Diff([]string{"start web/0 r5", "signal web/0 r4 terminated"}, log); diff != "" {
		t.Errorf("another code in the same directory (-want +got):\n%s", diff)
	}
	// Without a Code, the revision says what the code is.
	_, log = reload("r6", "/code/r4", "", groupSpec("web", 1))
	if diff := cmp.Diff([]string{"start web/0 r6", "signal web/0 r5 terminated"}, log); diff != "" {
		t.Errorf("no code, another revision in the same directory (-want +got):\n%s", diff)
	}
}

// A revision of the same code that changes only the strategy replaces no
// worker, and the next reload follows its strategy.
func TestStrategyChangeOfAnotherRevisionOfTheSameCode(t *testing.T) {
	h := newHarnessWith(t, func(o *Options) { o.Code = "code-1" }, v1alpha1.RolloutStrategy{}, groupSpec("web", 2))
	h.respond()
	h.waitReady("r1")
	h.os.takeLog()
	st, err := h.s.ReloadTo(context.Background(), Target{Revision: "r2", CodeDir: "/code/r1", Code: "code-1", Groups: []v1alpha1.WorkerGroup{groupSpec("web", 2)},
		Strategy: &v1alpha1.RolloutStrategy{Replacement: v1alpha1.StopFirst, MaxSurge: 2}})
	if err != nil || st.State != v1alpha1.AgentReady || st.Revision != "r2" {
		t.Fatalf("reload to r2: %+v, %v; want Ready", st, err)
	}
	if log := h.os.takeLog(); len(log) != 0 {
		t.Errorf("a new strategy alone started or stopped workers: %v", log)
	}
	_, log, err := h.reloadTo("r3", groupSpec("web", 2))
	if err != nil {
		t.Fatalf("reload to r3: %v", err)
	}
	want := []string{"signal web/0 r1 terminated", "signal web/1 r1 terminated", "start web/0 r3", "start web/1 r3"}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("the next reload, StopFirst two at a time (-want +got):\n%s", diff)
	}
}
