package process

import (
	"errors"
	"os"
	"os/signal"
	"slices"
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
			// Workers are waited for one by one (waitFor); this loop
			// reaps orphans, and is a safety net. SIGCHLDs merge, hence
			// the ticker.
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

// waitFor blocks until p's process has exited, without reaping it
// (WNOWAIT), then reaps it under the lock: the worker's exit is seen at
// once, and an orphan reaper can never take its status unnoticed.
func (r *reaper) waitFor(p *proc) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.procs[p.pid] != p {
		return // reaped by reap
	}
	var ws syscall.WaitStatus
	got, err := syscall.Wait4(p.pid, &ws, syscall.WNOHANG, nil)
	switch {
	case got == p.pid:
		delete(r.procs, p.pid)
		p.reaped(ws, nil)
	case errors.Is(err, syscall.ECHILD):
		delete(r.procs, p.pid)
		p.reaped(0, errors.New("exit status unknown: reaped elsewhere"))
	}
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

// SignalWorkers sends sig to every worker this process started that has
// not exited yet, and returns their pids: a signal the agent passes on to
// its workers.
func SignalWorkers(sig os.Signal) []int {
	theReaper.mu.Lock()
	procs := make([]*proc, 0, len(theReaper.procs))
	for _, p := range theReaper.procs {
		procs = append(procs, p)
	}
	theReaper.mu.Unlock()
	var pids []int
	for _, p := range procs {
		if p.Signal(sig) == nil {
			pids = append(pids, p.pid)
		}
	}
	slices.Sort(pids)
	return pids
}
