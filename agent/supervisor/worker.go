package supervisor

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"

	"github.com/softreload/softreload/api/v1alpha1"
)

// WorkerState is the state of one worker process.
type WorkerState string

const (
	// WorkerStarting is a worker that runs and is not ready yet.
	WorkerStarting WorkerState = "Starting"
	// WorkerReady is a worker that is ready and serves.
	WorkerReady WorkerState = "Ready"
	// WorkerStopping is a worker asked to stop that has not exited yet.
	WorkerStopping WorkerState = "Stopping"
	// WorkerBackoff is a crashed worker waiting to be restarted.
	WorkerBackoff WorkerState = "Backoff"
	// WorkerExited is a worker that exited and is not restarted.
	WorkerExited WorkerState = "Exited"
)

type slot struct {
	index    int
	cur      *worker // the worker serving this slot
	next     *worker // a worker a reload is bringing up
	restarts int32
	// backoff paces the restarts after consecutive crashes; nil until the
	// first crash, and again after a reload.
	backoff *wait.Backoff
}

type worker struct {
	id        uint64
	g         *group
	s         *slot
	spec      *v1alpha1.WorkerGroup // what it was started with
	rev       target
	proc      Process
	state     WorkerState
	started   time.Time
	since     time.Time
	stopping  bool
	stopSent  time.Time // when it was sent its stop signal
	killed    bool      // its stop timeout ran out: it was sent SIGKILL
	exited    bool
	exitErr   error
	failure   string // why it did not become ready
	candidate bool
	timers    []clock.Timer
}

func (w *worker) name() string { return fmt.Sprintf("%s/%d", w.g.spec.Name, w.s.index) }

// start starts a worker for slot sl on revision rev with the group spec gs.
// A worker that cannot be started is returned exited, with its failure set.
func (s *Supervisor) start(g *group, sl *slot, rev target, gs *v1alpha1.WorkerGroup, candidate bool) *worker {
	s.nextID++
	now := s.clock.Now()
	w := &worker{id: s.nextID, g: g, s: sl, spec: gs, rev: rev, state: WorkerStarting, started: now, since: now, candidate: candidate}
	spec := ProcessSpec{
		Group:   gs.Name,
		Slot:    sl.index,
		Command: append(append([]string{}, gs.Command...), gs.Args...),
		Dir:     rev.dir,
		Notify:  gs.Readiness.Type == v1alpha1.ReadinessNotify,
	}
	for i, a := range gs.Listen {
		spec.Files = append(spec.Files, s.files[a])
		spec.Names = append(spec.Names, gs.Name+"-"+strconv.Itoa(i))
	}
	for _, e := range gs.Env {
		spec.Env = append(spec.Env, e.Name+"="+e.Value)
	}
	spec.Env = append(spec.Env,
		EnvGroup+"="+gs.Name,
		EnvWorkerID+"="+strconv.Itoa(sl.index),
		EnvRevision+"="+rev.revision,
		EnvCodeDir+"="+rev.dir,
	)
	p, err := s.opts.OS.Start(spec)
	if err != nil {
		w.exited, w.exitErr, w.state = true, err, WorkerExited
		w.failure = fmt.Sprintf("worker %s could not start: %v", w.name(), err)
		s.log.Error("Worker could not start", "worker", w.name(), "revision", rev.revision, "err", err)
		if !candidate {
			s.crashed(w)
		}
		return w
	}
	w.proc = p
	s.live = append(s.live, w)
	s.log.Info("Worker started", "worker", w.name(), "pid", p.Pid(), "revision", rev.revision)
	go s.watch(w)
	r := gs.Readiness
	if r.Type == v1alpha1.ReadinessDelay {
		delay := time.Duration(*r.DelaySeconds) * time.Second
		if delay == 0 {
			w.state = WorkerReady
		} else {
			w.timers = append(w.timers, s.clock.AfterFunc(delay, func() { s.send(evDelayElapsed{w}) }))
		}
	}
	if w.state == WorkerStarting {
		timeout := time.Duration(r.TimeoutSeconds) * time.Second
		w.timers = append(w.timers, s.clock.AfterFunc(timeout, func() { s.send(evReadyDeadline{w}) }))
	}
	return w
}

// watch forwards the events of one process to the Run goroutine.
func (s *Supervisor) watch(w *worker) {
	ready := w.proc.Ready()
	for {
		select {
		case <-ready:
			s.send(evReady{w})
			ready = nil
		case <-w.proc.Done():
			s.send(evExited{w})
			return
		}
	}
}

func (s *Supervisor) markReady(w *worker) {
	if w.state != WorkerStarting || w.exited {
		return
	}
	w.state = WorkerReady
	w.since = s.clock.Now()
	for _, t := range w.timers { // the readiness timers
		t.Stop()
	}
	w.timers = nil
	s.log.Info("Worker ready", "worker", w.name(), "pid", w.proc.Pid(), "revision", w.rev.revision)
}

func (s *Supervisor) exited(w *worker) {
	w.exited = true
	s.live = slices.DeleteFunc(s.live, func(l *worker) bool { return l == w })
	w.exitErr = w.proc.Err()
	w.since = s.clock.Now()
	for _, t := range w.timers {
		t.Stop()
	}
	w.timers = nil
	wasReady := w.state == WorkerReady
	w.state = WorkerExited
	switch {
	case w.stopping:
		s.stopped(w)
	case w.candidate:
		if w.failure == "" {
			when := "before it was ready"
			if wasReady {
				when = "while the reload was in progress"
			}
			w.failure = fmt.Sprintf("worker %s (revision %s) exited %s: %s", w.name(), w.rev.revision, when, exitString(w.exitErr))
		}
		s.log.Error("New worker exited", "worker", w.name(), "pid", w.proc.Pid(), "revision", w.rev.revision, "exit", exitString(w.exitErr))
	case w.s.cur == w && !s.stopping:
		s.log.Error("Worker exited unexpectedly", "worker", w.name(), "pid", w.proc.Pid(), "exit", exitString(w.exitErr))
		s.crashed(w)
	}
}

// stopped records how long w, told to stop, took to exit, and whether it
// had to be killed.
func (s *Supervisor) stopped(w *worker) {
	took := w.since.Sub(w.stopSent)
	w.g.drains.add(took, w.killed)
	if s.opts.Recorder != nil {
		s.opts.Recorder.WorkerStopped(w.g.spec.Name, took, w.killed)
	}
	s.log.Info("Worker stopped", "worker", w.name(), "pid", w.proc.Pid(), "exit", exitString(w.exitErr), "drain", took, "killed", w.killed)
}

// crashed schedules the restart of the slot's current worker w, with
// exponential backoff.
func (s *Supervisor) crashed(w *worker) {
	sl := w.s
	if sl.backoff == nil || s.clock.Since(w.started) >= s.opts.BackoffReset {
		sl.backoff = s.crashBackoff()
	}
	delay := sl.backoff.Step()
	sl.restarts++
	w.state = WorkerBackoff
	if s.opts.Recorder != nil {
		s.opts.Recorder.WorkerRestarted(w.g.spec.Name)
	}
	s.log.Info("Restarting worker after backoff", "worker", w.name(), "backoff", delay, "restarts", sl.restarts)
	w.timers = append(w.timers, s.clock.AfterFunc(delay, func() { s.send(evRestart{w}) }))
}

// crashBackoff is the pace of a slot's restarts: from BackoffInitial,
// doubling up to BackoffMax, then every BackoffMax (Step keeps returning the
// cap). It is the wait.Backoff that paces agent pod's retries against the
// API server, without that one's jitter: a slot's delays are exact.
func (s *Supervisor) crashBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: min(s.opts.BackoffInitial, s.opts.BackoffMax), Factor: 2, Steps: math.MaxInt32, Cap: s.opts.BackoffMax}
}

// stopWorker sends w its stop signal and arms the kill timer. A worker that
// is waiting for a restart just stops waiting.
func (s *Supervisor) stopWorker(w *worker) {
	if w == nil || w.stopping {
		return
	}
	w.stopping = true
	if w.exited {
		for _, t := range w.timers {
			t.Stop()
		}
		w.state = WorkerExited
		return
	}
	w.state = WorkerStopping
	w.since = s.clock.Now()
	w.stopSent = w.since
	sig := signalByName(w.spec.StopSignal)
	s.log.Info("Stopping worker", "worker", w.name(), "pid", w.proc.Pid(), "signal", string(w.spec.StopSignal))
	if err := w.proc.Signal(sig); err != nil {
		s.log.Warn("Could not signal worker", "worker", w.name(), "pid", w.proc.Pid(), "err", err)
	}
	timeout := time.Duration(w.spec.StopTimeoutSeconds) * time.Second
	w.timers = append(w.timers, s.clock.AfterFunc(timeout, func() { s.send(evKill{w}) }))
}

func allExited(ws []*worker) bool {
	for _, w := range ws {
		if !w.exited {
			return false
		}
	}
	return true
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

var signals = map[v1alpha1.Signal]syscall.Signal{
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGWINCH": syscall.SIGWINCH, "SIGKILL": syscall.SIGKILL,
}

func signalByName(name v1alpha1.Signal) syscall.Signal {
	if sig, ok := signals[name]; ok {
		return sig
	}
	return syscall.SIGTERM
}
