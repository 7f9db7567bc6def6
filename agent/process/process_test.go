package process_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/internal/procstat"
)

func TestMain(m *testing.M) {
	process.RunShimIfAsked()
	testworker.RunIfAsked()
	if n, err := strconv.Atoi(os.Getenv(startsWorkers)); err == nil {
		startWorkersAndWait(n)
	}
	os.Exit(m.Run())
}

// startsWorkers makes the test binary an agent of N workers: it starts
// them, prints their pids and waits to be killed.
const startsWorkers = "PROCESS_TEST_STARTS_WORKERS"

func startWorkersAndWait(n int) {
	o, err := process.New(process.Options{})
	if err != nil {
		panic(err)
	}
	for i := range n {
		p, err := o.Start(supervisor.ProcessSpec{Group: "g", Slot: i, Dir: "/", Command: []string{"sleep", "1000"}})
		if err != nil {
			panic(err)
		}
		fmt.Println(p.Pid())
	}
	select {}
}

// ExampleOS_Start shows the worker contract: the sockets from fd 3 with
// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID set to the worker's own pid (as
// sd_listen_fds(3) requires), the SOFTRELOAD_* variables, a NOTIFY_SOCKET,
// and output prefixed with group and slot.
func ExampleOS_Start() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		panic(err)
	}
	defer f.Close()

	o, err := process.New(process.Options{})
	if err != nil {
		panic(err)
	}
	defer o.Close()
	p, err := o.Start(supervisor.ProcessSpec{
		Group: "web", Slot: 0, Dir: "/",
		Command: []string{"sh", "-c", `
			echo "LISTEN_FDS=$LISTEN_FDS LISTEN_FDNAMES=$LISTEN_FDNAMES"
			[ "$LISTEN_PID" = "$$" ] && echo "LISTEN_PID is the worker's own pid"
			[ -S /proc/$$/fd/3 ] && echo "fd 3 is the listening socket"
			[ -S "$NOTIFY_SOCKET" ] && echo "NOTIFY_SOCKET takes READY=1"
			echo "SOFTRELOAD_GROUP=$SOFTRELOAD_GROUP SOFTRELOAD_WORKER_ID=$SOFTRELOAD_WORKER_ID"`},
		Env:    []string{"SOFTRELOAD_GROUP=web", "SOFTRELOAD_WORKER_ID=0"},
		Files:  []*os.File{f},
		Names:  []string{"web-0"},
		Notify: true,
	})
	if err != nil {
		panic(err)
	}
	<-p.Done()
	fmt.Println("exit:", p.Err())
	// Output:
	// [web/0] LISTEN_FDS=1 LISTEN_FDNAMES=web-0
	// [web/0] LISTEN_PID is the worker's own pid
	// [web/0] fd 3 is the listening socket
	// [web/0] NOTIFY_SOCKET takes READY=1
	// [web/0] SOFTRELOAD_GROUP=web SOFTRELOAD_WORKER_ID=0
	// exit: <nil>
}

const wait = 2 * time.Minute

func newOS(t *testing.T) (*process.OS, *strings.Builder) {
	t.Helper()
	var out lockedBuilder
	o, err := process.New(process.Options{Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o, &out.b
}

type lockedBuilder struct{ b strings.Builder }

func (l *lockedBuilder) Write(p []byte) (int, error) { return l.b.Write(p) }

func done(t *testing.T, p supervisor.Process) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatal("the process did not exit")
	}
}

// TestReadyIsTheRightWorkers: each worker has its own NOTIFY_SOCKET, so a
// READY=1 is never taken for another worker's.
func TestReadyIsTheRightWorkers(t *testing.T) {
	o, _ := newOS(t)
	self, _ := os.Executable()
	start := func(slot int, mode string) supervisor.Process {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "mode"), []byte(mode), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := o.Start(supervisor.ProcessSpec{
			Group: "web", Slot: slot, Dir: dir, Command: []string{self}, Notify: true,
			Env: []string{testworker.Env + "=1", "SOFTRELOAD_CODE_DIR=" + dir, "GORACE=atexit_sleep_ms=0"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	silent := start(0, "hang")
	ready := start(1, "")
	select {
	case <-ready.Ready():
	case <-silent.Ready():
		t.Fatal("the silent worker was taken for ready")
	case <-time.After(wait):
		t.Fatal("READY=1 never arrived")
	}
	for _, p := range []supervisor.Process{silent, ready} {
		if err := p.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		done(t, p)
	}
	select {
	case <-silent.Ready():
		t.Error("the silent worker was taken for ready")
	default:
	}
}

func TestExitStatusAndOutput(t *testing.T) {
	tests := map[string]struct {
		command []string
		signal  syscall.Signal
		err     string
		output  []string
	}{
		"clean exit":  {command: []string{"true"}, err: "<nil>"},
		"exit status": {command: []string{"sh", "-c", "echo one; echo two >&2; exit 3"}, err: "exit status 3", output: []string{"one", "two"}},
		"killed":      {command: []string{"sleep", "1000"}, signal: syscall.SIGKILL, err: "killed by signal killed"},
		"terminated":  {command: []string{"sleep", "1000"}, signal: syscall.SIGTERM, err: "killed by signal terminated"},
		"not found": {command: []string{"no-such-program-here"}, err: "exit status 127",
			output: []string{`softreload: cannot run "no-such-program-here": not found in PATH`}},
		"relative to the code directory": {command: []string{"./missing.sh"}, err: "exit status 127"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o, out := newOS(t)
			p, err := o.Start(supervisor.ProcessSpec{Group: "g", Slot: 1, Dir: t.TempDir(), Command: tc.command})
			if err != nil {
				t.Fatal(err)
			}
			if tc.signal != 0 {
				if err := p.Signal(tc.signal); err != nil {
					t.Fatal(err)
				}
			}
			done(t, p)
			if got := fmt.Sprint(p.Err()); got != tc.err {
				t.Errorf("Err() = %s, want %s", got, tc.err)
			}
			// stdout and stderr are read apart: their lines may come in
			// either order.
			got := p.Output()
			sort.Strings(got)
			if tc.output != nil && strings.Join(got, "\n") != strings.Join(tc.output, "\n") {
				t.Errorf("Output() = %q, want %q", got, tc.output)
			}
			for _, line := range tc.output {
				if !strings.Contains(out.String(), "[g/1] "+line+"\n") {
					t.Errorf("passed-through output %q lacks %q", out.String(), "[g/1] "+line)
				}
			}
			if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
			}
		})
	}
}

func TestOutputKeepsTheLastLines(t *testing.T) {
	o, err := process.New(process.Options{Stdout: &lockedBuilder{}, Stderr: &lockedBuilder{}, OutputLines: 3, NoPrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	p, err := o.Start(supervisor.ProcessSpec{Group: "g", Dir: "/", Command: []string{"sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done"}})
	if err != nil {
		t.Fatal(err)
	}
	done(t, p)
	if got, want := strings.Join(p.Output(), ","), "line 3,line 4,line 5"; got != want {
		t.Errorf("Output() = %q, want %q", got, want)
	}
}

func TestAgentEnvironmentDoesNotLeak(t *testing.T) {
	t.Setenv("LISTEN_FDS", "7")
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	o, _ := newOS(t)
	p, err := o.Start(supervisor.ProcessSpec{Group: "g", Dir: "/", Command: []string{"sh", "-c", `echo "[$LISTEN_FDS][$NOTIFY_SOCKET][$SOFTRELOAD_SHIM]"`}})
	if err != nil {
		t.Fatal(err)
	}
	done(t, p)
	if got := strings.Join(p.Output(), ""); got != "[][][]" {
		t.Errorf("worker saw %s, want none of the agent's own LISTEN_FDS, NOTIFY_SOCKET or shim marker", got)
	}
}

// A line longer than the read buffer of a worker's output reaches the
// agent's output whole, and the last lines a failure reports keep its
// start.
func TestALongLinePassesWhole(t *testing.T) {
	out := &lockedBuilder{}
	o, err := process.New(process.Options{Stdout: out, Stderr: &lockedBuilder{}, OutputLines: 3, NoPrefix: true})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	p, err := o.Start(supervisor.ProcessSpec{Group: "g", Dir: "/", Command: []string{"sh", "-c", `printf '%0100000d\n' 7; echo end`}})
	if err != nil {
		t.Fatal(err)
	}
	done(t, p)
	long := strings.Repeat("0", 99_999) + "7"
	if got, want := out.b.String(), long+"\nend\n"; got != want {
		t.Errorf("the agent's output has %d bytes, want the %d of the worker's", len(got), len(want))
	}
	if lines := p.Output(); len(lines) != 2 || !strings.HasPrefix(lines[0], long[:4096]) || lines[1] != "end" {
		t.Errorf("Output() = %.80q (%d lines), want the long line's start and end", lines, len(lines))
	}
}

// TestAChildKeepingTheOutputOpenDoesNotHoldTheWorker: a worker that leaves
// a child behind with its stdout and stderr (sh's "cmd &") is done once
// what it wrote is handled, without waiting for the child; the child's
// output still passes through. The limit on that wait is longer than the
// test's, so only seeing the output handled can end it.
func TestAChildKeepingTheOutputOpenDoesNotHoldTheWorker(t *testing.T) {
	var out testworker.Output
	o, err := process.New(process.Options{Stdout: &out, Stderr: &out, OutputWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	release := filepath.Join(t.TempDir(), "release")
	p, err := o.Start(supervisor.ProcessSpec{Group: "g", Slot: 0, Dir: t.TempDir(),
		Env: []string{"RELEASE=" + release},
		Command: []string{"sh", "-c", `(while [ ! -e "$RELEASE" ]; do sleep 0.01; done; echo the child, later) &
			echo last words; echo on stderr >&2`}})
	if err != nil {
		t.Fatal(err)
	}
	done(t, p)
	got := p.Output()
	sort.Strings(got)
	if want := []string{"last words", "on stderr"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Output() = %q, want %q", got, want)
	}
	if strings.Contains(out.String(), "the child") {
		t.Fatalf("the child wrote before it was released: %q", out.String())
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	NewWithT(t).Eventually(out.String).WithTimeout(wait).Should(ContainSubstring("[g/0] the child, later\n"),
		"the child's output, after the worker")
}

// TestWorkersDieWithAKilledAgent: an agent killed with SIGKILL takes its
// workers with it (their parent-death signal), so that none holds the
// pod's ports when it starts again.
func TestWorkersDieWithAKilledAgent(t *testing.T) {
	const n = 16
	agent := exec.Command(os.Args[0])
	agent.Env = append(os.Environ(), startsWorkers+"="+strconv.Itoa(n))
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	started := map[int]uint64{}
	lines := bufio.NewScanner(out)
	for len(started) < n && lines.Scan() {
		pid, err := strconv.Atoi(lines.Text())
		if err != nil {
			t.Fatalf("the agent printed %q, not a pid", lines.Text())
		}
		st, err := procstat.Read(pid)
		if err != nil {
			t.Fatalf("worker %d: %v", pid, err)
		}
		started[pid] = st.StartTime
	}
	if len(started) < n {
		t.Fatalf("the agent started %d workers, not %d", len(started), n)
	}
	if err := agent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = agent.Wait()
	NewWithT(t).Eventually(func() []int {
		var alive []int
		for pid, at := range started {
			if procstat.Runs(pid, at) {
				alive = append(alive, pid)
			}
		}
		return alive
	}).WithTimeout(wait).Should(BeEmpty(), "workers alive after their agent was killed")
}
