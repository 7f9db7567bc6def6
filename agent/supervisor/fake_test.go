package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeOS starts fake processes and logs what happens to them, so a test can
// compare the order of starts and signals with what it expects.
type fakeOS struct {
	mu      sync.Mutex
	nextPid int
	log     []string
	procs   []*fakeProc
	started chan *fakeProc
	// failStart, if set, makes Start fail for specs it returns true for.
	failStart func(ProcessSpec) bool
}

func newFakeOS() *fakeOS {
	return &fakeOS{nextPid: 100, started: make(chan *fakeProc, 1000)}
}

func (f *fakeOS) Start(spec ProcessSpec) (Process, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failStart != nil && f.failStart(spec) {
		return nil, errors.New("exec: no such file")
	}
	f.nextPid++
	p := &fakeProc{os: f, spec: spec, pid: f.nextPid, ready: make(chan struct{}), done: make(chan struct{})}
	f.log = append(f.log, fmt.Sprintf("start %s/%d %s", spec.Group, spec.Slot, revisionOf(spec)))
	f.procs = append(f.procs, p)
	f.started <- p
	return p, nil
}

func (f *fakeOS) record(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}

// takeLog returns the log so far and empties it.
func (f *fakeOS) takeLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.log
	f.log = nil
	return l
}

// next waits for the next started process.
func (f *fakeOS) next(t *testing.T) *fakeProc {
	t.Helper()
	select {
	case p := <-f.started:
		return p
	case <-time.After(30 * time.Second):
		t.Fatal("no process was started")
		return nil
	}
}

// noneStarted fails if a process was started and not taken by next.
func (f *fakeOS) noneStarted(t *testing.T) {
	t.Helper()
	select {
	case p := <-f.started:
		t.Fatalf("unexpected start of %s/%d", p.spec.Group, p.spec.Slot)
	default:
	}
}

// revisionOf is the SOFTRELOAD_REVISION a process was started with.
func revisionOf(spec ProcessSpec) string {
	for _, e := range spec.Env {
		if v, ok := strings.CutPrefix(e, EnvRevision+"="); ok {
			return v
		}
	}
	return ""
}

type fakeProc struct {
	os    *fakeOS
	spec  ProcessSpec
	pid   int
	ready chan struct{}
	done  chan struct{}

	readyOnce  sync.Once
	mu         sync.Mutex
	err        error
	exited     bool
	ignoreTerm bool
	output     []string
}

func (p *fakeProc) Pid() int               { return p.pid }
func (p *fakeProc) Ready() <-chan struct{} { return p.ready }
func (p *fakeProc) Done() <-chan struct{}  { return p.done }
func (p *fakeProc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *fakeProc) Output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.output...)
}

func (p *fakeProc) Signal(sig os.Signal) error {
	p.os.record(fmt.Sprintf("signal %s/%d %s %v", p.spec.Group, p.spec.Slot, revisionOf(p.spec), sig))
	p.mu.Lock()
	ignore := p.ignoreTerm && sig != syscall.SIGKILL
	p.mu.Unlock()
	if !ignore {
		p.exit(fmt.Errorf("signal: %v", sig))
	}
	return nil
}

// markReady sends READY=1 (once, however often it is called).
func (p *fakeProc) markReady() { p.readyOnce.Do(func() { close(p.ready) }) }

// exit ends the process with err (nil: exit status 0).
func (p *fakeProc) exit(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return
	}
	p.exited, p.err = true, err
	close(p.done)
}

func (p *fakeProc) write(lines ...string) {
	p.mu.Lock()
	p.output = append(p.output, lines...)
	p.mu.Unlock()
}
