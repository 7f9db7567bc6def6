package process

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper owns every wait of this process's children.
type reaper struct {
	mu      sync.Mutex
	procs   map[int]*proc
	orphans bool
}

var (
	theReaper     = &reaper{procs: map[int]*proc{}}
	startReaperMu sync.Once
)

// ReapOrphans makes the agent also reap children it did not start, as PID 1
// (or a subreaper) must. Nothing else in the process may wait for children
// afterwards.
func ReapOrphans() {
	theReaper.mu.Lock()
	theReaper.orphans = true
	theReaper.mu.Unlock()
	startReaper()
}

// BecomeSubreaper makes orphaned grandchildren of the workers children of
// this process (prctl PR_SET_CHILD_SUBREAPER), so they are reaped even when
// the agent is not PID 1.
func BecomeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

func startReaper() {
	startReaperMu.Do(func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGCHLD)
		go func() {
			// SIGCHLDs merge; the ticker is a safety net, not the clock
			// of anything.
			t := time.NewTicker(time.Second)
			for {
				select {
				case <-sigs:
				case <-t.C:
				}
				theReaper.reap()
			}
		}()
	})
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws syscall.WaitStatus
	if r.orphans {
		for {
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
			if p := r.procs[pid]; p != nil {
				delete(r.procs, pid)
				p.reaped(ws, nil)
			}
		}
	}
	for pid, p := range r.procs {
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		switch {
		case got == pid:
			delete(r.procs, pid)
			p.reaped(ws, nil)
		case errors.Is(err, syscall.ECHILD):
			delete(r.procs, pid)
			p.reaped(0, errors.New("exit status unknown: reaped elsewhere"))
		}
	}
}
