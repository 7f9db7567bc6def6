package control_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/api/v1alpha1"
)

type backend struct {
	status  supervisor.Status
	stopped atomic.Bool
	asked   atomic.Int32
	fail    bool
}

func (b *backend) Reload(context.Context) (v1alpha1.AgentStatus, error) {
	if b.fail {
		return v1alpha1.AgentStatus{State: v1alpha1.AgentFailed, Revision: "r2", Running: "r1"}, errors.New("worker web/0 exited")
	}
	return v1alpha1.AgentStatus{State: v1alpha1.AgentReady, Revision: "r2", Running: "r2", Ready: 1, Total: 1}, nil
}
func (b *backend) RequestReload() error      { b.asked.Add(1); return nil }
func (b *backend) Status() supervisor.Status { return b.status }
func (b *backend) Stop()                     { b.stopped.Store(true) }

func serve(t *testing.T, b *backend) *control.Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.sock")
	l, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: control.Handler(b)}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	if _, err := control.Listen(path); err == nil || !strings.Contains(err.Error(), "another agent is running") {
		t.Errorf("a second Listen on a live socket = %v, want an error", err)
	}
	return control.NewClient(path)
}

func TestControlSocket(t *testing.T) {
	started := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &backend{status: supervisor.Status{
		Agent:   v1alpha1.AgentStatus{Revision: "r1", Running: "r1", State: v1alpha1.AgentReady, Ready: 1, Total: 1},
		Workers: []supervisor.WorkerStatus{{Group: "web", Slot: 0, PID: 42, Revision: "r1", State: supervisor.WorkerReady, Started: started, Since: started, Reloadable: true}},
		Groups:  []supervisor.GroupStatus{{Name: "web", Stopped: 3, Killed: 1, LastDrainSeconds: 0.25, SlowestDrainSeconds: 30}},
	}}
	c := serve(t, b)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b.status, st); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	r, err := c.Reload(ctx, true)
	if err != nil || r.Error != "" || r.Status.Running != "r2" {
		t.Errorf("Reload(wait) = %+v, %v", r, err)
	}
	if _, err := c.Reload(ctx, false); err != nil || b.asked.Load() != 1 {
		t.Errorf("Reload(no wait) = %v, asked %d times", err, b.asked.Load())
	}
	b.fail = true
	if r, err := c.Reload(ctx, true); err != nil || !strings.Contains(r.Error, "web/0 exited") || r.Status.State != v1alpha1.AgentFailed {
		t.Errorf("failed Reload = %+v, %v; want the failure reported", r, err)
	}
	if err := c.Stop(ctx); err != nil || !b.stopped.Load() {
		t.Errorf("Stop = %v, stopped %v", err, b.stopped.Load())
	}
}

func TestNoAgent(t *testing.T) {
	c := control.NewClient(filepath.Join(t.TempDir(), "none.sock"))
	if _, err := c.Status(context.Background()); err == nil || !strings.Contains(err.Error(), "no agent answers") {
		t.Errorf("Status with no agent = %v", err)
	}
}

func TestWriteTable(t *testing.T) {
	now := time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)
	st := supervisor.Status{
		Agent: v1alpha1.AgentStatus{Revision: "r2", Running: "r1", State: v1alpha1.AgentReloading, Ready: 2, Total: 3},
		Workers: []supervisor.WorkerStatus{
			{Group: "web", Slot: 0, PID: 101, Revision: "r1", State: supervisor.WorkerReady, Started: now.Add(-time.Hour), Restarts: 2, Reloadable: true, MemoryBytes: 20 << 20},
			{Group: "web", Slot: 0, PID: 130, Revision: "r2", State: supervisor.WorkerStarting, Started: now.Add(-2 * time.Second), Reloadable: true, Next: true},
			{Group: "gw", Slot: 0, Revision: "r1", State: supervisor.WorkerBackoff, Restarts: 5},
		},
		Groups: []supervisor.GroupStatus{
			{Name: "web", Stopped: 4, Killed: 1, LastDrainSeconds: 0.1204, SlowestDrainSeconds: 30.0016},
			{Name: "gw"},
		},
	}
	var b strings.Builder
	if err := control.WriteTable(&b, st, now); err != nil {
		t.Fatal(err)
	}
	want := `revision r1  state Reloading  ready 2/3  (reloading r2)

GROUP  SLOT  PID  REVISION  STATE                     UPTIME  RESTARTS  MEMORY
web    0     101  r1        Ready                     1h0m0s  2         20.0M
web    0     130  r2        Starting (new)            2s      0         -
gw     0     -    r1        Backoff (not reloadable)  -       5         -

GROUP  STOPPED  KILLED  LAST DRAIN  SLOWEST DRAIN
web    4        1       120ms       30.002s
gw     0        0       -           -
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func TestWriteTableSaysWhichSpecEachGroupRuns(t *testing.T) {
	st := supervisor.Status{
		Agent: v1alpha1.AgentStatus{Revision: "r2", Running: "r2", State: v1alpha1.AgentReady, Ready: 3, Total: 3},
		Groups: []supervisor.GroupStatus{
			{Name: "web", Spec: "0a1b2c3d4e", Count: 2, Reloadable: true, Listen: []v1alpha1.ListenAddress{"tcp://:8080", "unix:///run/web.sock"}},
			{Name: "gw", Spec: "5f6a7b8c9d", Count: 1, Outdated: v1alpha1.GroupSpecChanged},
		},
	}
	var b strings.Builder
	if err := control.WriteTable(&b, st, time.Now()); err != nil {
		t.Fatal(err)
	}
	want := `GROUP  SPEC        COUNT  RELOADABLE  LISTEN                            NOTE
web    0a1b2c3d4e  2      true        tcp://:8080,unix:///run/web.sock  -
gw     5f6a7b8c9d  1      false       -                                 older spec: the revision changes this group, which is not reloadable
`
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("table ends with:\n%s\nwant:\n%s", got, want)
	}
}
