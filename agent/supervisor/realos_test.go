package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	"github.com/softreload/softreload/agent/metrics"
	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
)

func TestMain(m *testing.M) {
	process.RunShimIfAsked()
	os.Exit(m.Run())
}

// wait bounds every wait for an event: generous, so that no test depends on
// the speed of the machine.
const wait = 2 * time.Minute

// gatedWorker is a worker that, when a fifo named after its revision exists
// in gates, ignores its stop signal and runs until the test opens and closes
// that fifo (a worker draining a long request); otherwise it stops at once.
func gatedWorker(gates string) v1alpha1.WorkerGroup {
	return v1alpha1.WorkerGroup{
		Name: "web",
		Command: []string{"sh", "-c", `gate="$GATES/$SOFTRELOAD_REVISION"
if [ -p "$gate" ]; then trap "" TERM; exec cat "$gate"; fi
exec sleep 1000`},
		Env:                []v1alpha1.EnvVar{{Name: "GATES", Value: gates}},
		Readiness:          v1alpha1.Readiness{Type: v1alpha1.ReadinessDelay, DelaySeconds: ptr.To[int32](0)},
		StopTimeoutSeconds: 3600,
	}
}

// With real processes: a worker replaced by a reload (SurgeFirst) and still
// draining when the supervisor is stopped is waited for; Run returns only
// once it exited, and no process of the supervisor outlives Run.
func TestRunWaitsForAReplacedWorkerThatDrains(t *testing.T) {
	gates := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(gates, "r1"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &testworker.Output{}
	pos, err := process.New(process.Options{Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	defer pos.Close()
	s, err := supervisor.New(supervisor.Options{
		Groups: []v1alpha1.WorkerGroup{gatedWorker(gates)}, Revision: "r1", CodeDir: t.TempDir(),
		OS: pos, Logger: slog.New(slog.NewTextHandler(out, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("supervisor and worker output:\n%s", out.String())
		}
	}()
	var gateOpened atomic.Bool
	type result struct{ returnedBeforeGate, oldAlive bool }
	runs := make(chan result, 1)
	var oldPid atomic.Int64
	go func() {
		_ = s.Run(context.Background())
		runs <- result{
			returnedBeforeGate: !gateOpened.Load(),
			oldAlive:           syscall.Kill(int(oldPid.Load()), 0) == nil,
		}
	}()
	defer s.Stop()

	st := waitFor(t, s, "the r1 worker", func(st supervisor.Status) bool {
		return st.Agent.State == v1alpha1.AgentReady && len(st.PIDs("web")) == 1 && st.PIDs("web")[0] != 0
	})
	old := st.PIDs("web")[0]
	oldPid.Store(int64(old))
	// The old worker ignores SIGTERM once it waits at its gate.
	waitComm(t, old, "cat")

	reloaded := make(chan error, 1)
	go func() { _, err := s.Reload(context.Background(), "r2", t.TempDir()); reloaded <- err }()
	waitFor(t, s, "the r2 worker serving", func(st supervisor.Status) bool {
		return len(st.Workers) == 1 && st.Workers[0].Revision == "r2" && st.Workers[0].State == supervisor.WorkerReady
	})
	s.Stop()
	NewWithT(t).Eventually(func() string {
		select {
		case r := <-runs:
			if r.oldAlive {
				StopTrying(fmt.Sprintf("Run returned while the replaced worker %d still runs", old)).Now()
			}
			StopTrying("Run returned without saying it waited for the replaced worker").Now()
		default:
		}
		return out.String()
	}).WithTimeout(wait).WithPolling(10*time.Millisecond).Should(ContainSubstring("Waiting for a replaced worker to stop"),
		"the drain never waited for the replaced worker")
	// Let the old worker finish its drain.
	gateOpened.Store(true)
	gate, err := os.OpenFile(filepath.Join(gates, "r1"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	gate.Close()
	select {
	case r := <-runs:
		if r.returnedBeforeGate || r.oldAlive {
			t.Errorf("Run returned before the replaced worker %d exited (before its gate opened: %v, still alive: %v)", old, r.returnedBeforeGate, r.oldAlive)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return once every worker exited")
	}
	if err := <-reloaded; !errors.Is(err, supervisor.ErrStopped) {
		t.Errorf("Reload interrupted by Stop = %v, want ErrStopped", err)
	}
	if want := `msg="Worker stopped" worker=web/0 pid=` + strconv.Itoa(old) + ` exit="exit status 0"`; !strings.Contains(out.String(), want) {
		t.Errorf("the supervisor did not log %s", want)
	}
}

// With real processes: a reload replaces a worker that exits on SIGTERM and
// one that ignores it. The status and the metrics say the first drained in
// less than its stop timeout and was not killed, and the second was killed
// once its stop timeout ran out.
func TestDrainsOfRealWorkers(t *testing.T) {
	group := func(name, script string, stopTimeout int32) v1alpha1.WorkerGroup {
		return v1alpha1.WorkerGroup{
			Name: name, Command: []string{"sh", "-c", script},
			Readiness:          v1alpha1.Readiness{Type: v1alpha1.ReadinessDelay, DelaySeconds: ptr.To[int32](0)},
			StopTimeoutSeconds: stopTimeout,
		}
	}
	// A long stop timeout that the polite worker never needs, and the
	// shortest one for the stubborn worker: SIGTERM is ignored by sh and by
	// the program it execs.
	const politeTimeout = 3600
	groups := []v1alpha1.WorkerGroup{
		group("polite", "exec sleep 1000", politeTimeout),
		group("stubborn", `trap "" TERM; exec sleep 1000`, 1),
	}
	out := &testworker.Output{}
	pos, err := process.New(process.Options{Stdout: out, Stderr: out})
	if err != nil {
		t.Fatal(err)
	}
	defer pos.Close()
	var s *supervisor.Supervisor
	m := metrics.New(func() supervisor.Status { return s.Status() })
	s, err = supervisor.New(supervisor.Options{
		Groups: groups, Revision: "r1", CodeDir: t.TempDir(),
		OS: pos, Recorder: m, Logger: slog.New(slog.NewTextHandler(out, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("supervisor and worker output:\n%s", out.String())
		}
	}()
	runs := make(chan error, 1)
	go func() { runs <- s.Run(context.Background()) }()
	defer func() {
		s.Stop()
		if err := <-runs; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()

	st := waitFor(t, s, "the r1 workers", func(st supervisor.Status) bool {
		return st.Agent.State == v1alpha1.AgentReady && st.Agent.Ready == 2
	})
	// The stubborn worker ignores SIGTERM once sh has exec'd sleep.
	stubborn := st.PIDs("stubborn")[0]
	waitComm(t, stubborn, "sleep")
	if _, err := s.Reload(context.Background(), "r2", t.TempDir()); err != nil {
		t.Fatalf("Reload: %v", err)
	}

	got := s.Status().Groups
	if len(got) != 2 {
		t.Fatalf("groups = %+v, want polite and stubborn", got)
	}
	polite, stub := got[0], got[1]
	if polite.Name != "polite" || polite.Stopped != 1 || polite.Killed != 0 ||
		polite.LastDrainSeconds >= politeTimeout || polite.SlowestDrainSeconds != polite.LastDrainSeconds {
		t.Errorf("polite = %+v, want 1 stopped in less than its stop timeout, none killed", polite)
	}
	if stub.Name != "stubborn" || stub.Stopped != 1 || stub.Killed != 1 || stub.LastDrainSeconds < 1 {
		t.Errorf("stubborn = %+v, want 1 stopped and killed after its 1s stop timeout", stub)
	}
	if k := s.Status().Killed(); k != 1 {
		t.Errorf("Killed() = %d, want 1", k)
	}
	if want := `msg="Worker stopped" worker=stubborn/0 pid=` + strconv.Itoa(stubborn) + ` exit="killed by signal killed"`; !strings.Contains(out.String(), want) {
		t.Errorf("the supervisor did not log %s", want)
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`softreload_agent_worker_stop_kills_total{group="polite"} 0`,
		`softreload_agent_worker_stop_kills_total{group="stubborn"} 1`,
		`softreload_agent_worker_drain_seconds_bucket{group="polite",le="3600"} 1`,
		`softreload_agent_worker_drain_seconds_count{group="polite"} 1`,
		`softreload_agent_worker_drain_seconds_bucket{group="stubborn",le="0.5"} 0`,
		`softreload_agent_worker_drain_seconds_count{group="stubborn"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// waitFor waits until cond holds for s's status, and returns that status.
func waitFor(t *testing.T, s *supervisor.Supervisor, what string, cond func(supervisor.Status) bool) supervisor.Status {
	t.Helper()
	var st supervisor.Status
	NewWithT(t).Eventually(func() bool {
		st = s.Status()
		return cond(st)
	}).WithTimeout(wait).WithPolling(10*time.Millisecond).Should(BeTrue(),
		func() string { return fmt.Sprintf("waiting for %s; status: %+v", what, st) })
	return st
}

// waitComm waits until process pid runs the program named name.
func waitComm(t *testing.T, pid int, name string) {
	t.Helper()
	NewWithT(t).Eventually(func() string { return comm(pid) }).WithTimeout(wait).WithPolling(10*time.Millisecond).
		Should(Equal(name), "worker %d never ran %s", pid, name)
}

// comm is the name of process pid's program.
func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}
