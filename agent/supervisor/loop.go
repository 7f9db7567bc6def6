package supervisor

import (
	"context"
	"fmt"
	"syscall"

	"github.com/softreload/softreload/api/v1alpha1"
)

type event any

type (
	evReady         struct{ w *worker }
	evExited        struct{ w *worker }
	evDelayElapsed  struct{ w *worker }
	evReadyDeadline struct{ w *worker }
	evKill          struct{ w *worker }
	evRestart       struct{ w *worker }
	evStop          struct{}
)

type reloadRequest struct {
	to      target
	waiters []chan reloadReply
}

type reloadReply struct {
	status v1alpha1.AgentStatus
	err    error
}

// Run starts every worker and supervises them until Stop is called or ctx
// is done; then it drains every worker (stop signal, stop timeout, SIGKILL)
// and returns. It returns nil after a drain.
func (s *Supervisor) Run(ctx context.Context) error {
	defer close(s.done)
	stopCtx := context.AfterFunc(ctx, s.Stop)
	defer stopCtx()

	initial := &reloadRequest{to: s.running}
	s.current = initial
	for _, g := range s.groups {
		spec := g.spec // the workers' own copy: g.spec changes with the groups
		for _, sl := range g.slots {
			sl.cur = s.start(g, sl, s.running, &spec, false)
		}
	}
	s.publish()
	// A reload asked before every first worker is ready need not wait for
	// them: it replaces them anyway.
	if err := s.await(func() bool { return s.allReady() || s.pending != nil }); err == nil {
		s.current = nil
		if s.pending == nil {
			s.state = v1alpha1.AgentReady
		}
		s.publish()
		initial.reply(s.agentStatus(), nil)
	}
	for !s.stopping {
		if s.pending != nil {
			req := s.pending
			s.pending = nil
			s.reload(req)
			continue
		}
		s.handle(<-s.events)
	}
	s.drain()
	for _, req := range []*reloadRequest{s.current, s.pending} {
		if req != nil {
			req.reply(s.agentStatus(), ErrStopped)
		}
	}
	s.current, s.pending = nil, nil
	s.publish()
	return nil
}

// Stop asks the supervisor to drain its workers and return from Run. It
// does not wait; Done is closed when Run returned.
func (s *Supervisor) Stop() {
	s.stop.Do(func() { s.send(evStop{}) })
}

// Done is closed when Run has returned.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// RequestReload asks for a reload to revision, whose code is in codeDir,
// and returns at once. A reload asked while one is in progress runs after
// it, to the newest revision asked; asking again for the revision being
// loaded changes nothing.
func (s *Supervisor) RequestReload(revision, codeDir string) {
	s.RequestReloadTo(Target{Revision: revision, CodeDir: codeDir})
}

// RequestReloadTo is RequestReload for a revision that may change the
// groups.
func (s *Supervisor) RequestReloadTo(t Target) {
	s.send(&reloadRequest{to: t.internal()})
}

// Reload asks for a reload like RequestReload and waits until it is over.
// It returns the agent's status at the end, and an error when the reload
// failed (the workers then run the previous revision), when the supervisor
// stopped or when ctx is done. If a newer reload was asked meanwhile, the
// result is that of the newer one.
func (s *Supervisor) Reload(ctx context.Context, revision, codeDir string) (v1alpha1.AgentStatus, error) {
	return s.ReloadTo(ctx, Target{Revision: revision, CodeDir: codeDir})
}

// ReloadTo is Reload for a revision that may change the groups.
func (s *Supervisor) ReloadTo(ctx context.Context, t Target) (v1alpha1.AgentStatus, error) {
	reply := make(chan reloadReply, 1)
	if !s.send(&reloadRequest{to: t.internal(), waiters: []chan reloadReply{reply}}) {
		return s.Status().Agent, ErrStopped
	}
	select {
	case r := <-reply:
		return r.status, r.err
	case <-s.done:
		select {
		case r := <-reply:
			return r.status, r.err
		default:
			return s.Status().Agent, ErrStopped
		}
	case <-ctx.Done():
		return s.Status().Agent, ctx.Err()
	}
}

// send hands ev to the Run goroutine; false once Run has returned.
func (s *Supervisor) send(ev event) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case s.events <- ev:
		return true
	case <-s.done:
		return false
	}
}

func (r *reloadRequest) reply(st v1alpha1.AgentStatus, err error) {
	for _, w := range r.waiters {
		w <- reloadReply{st, err}
	}
	r.waiters = nil
}

// await handles events until cond holds. It returns ErrStopped if a stop
// was asked meanwhile.
func (s *Supervisor) await(cond func() bool) error {
	for !cond() {
		if s.stopping {
			return ErrStopped
		}
		s.handle(<-s.events)
	}
	if s.stopping {
		return ErrStopped
	}
	return nil
}

func (s *Supervisor) handle(ev event) {
	switch e := ev.(type) {
	case evReady:
		if e.w.spec.Readiness.Type == v1alpha1.ReadinessNotify {
			s.markReady(e.w)
		}
	case evDelayElapsed:
		s.markReady(e.w)
	case evReadyDeadline:
		w := e.w
		if w.state != WorkerStarting {
			break
		}
		w.failure = fmt.Sprintf("worker %s (revision %s) was not ready within %ds", w.name(), w.rev.revision, w.spec.Readiness.TimeoutSeconds)
		s.log.Error("Worker not ready in time", "worker", w.name(), "pid", w.proc.Pid(), "revision", w.rev.revision)
		if !w.candidate {
			// A restarted worker that never gets ready is killed, then
			// restarted with backoff like any crash.
			_ = w.proc.Signal(syscall.SIGKILL)
		}
	case evKill:
		if !e.w.exited {
			s.log.Warn("Worker did not stop in time, killing it", "worker", e.w.name(), "pid", e.w.proc.Pid())
			e.w.killed = true
			_ = e.w.proc.Signal(syscall.SIGKILL)
		}
	case evExited:
		s.exited(e.w)
	case evRestart:
		w := e.w
		// A worker told to stop while it waited (a drain, a smaller
		// count, its group removed) stays stopped.
		if w.s.cur == w && !w.stopping && !s.stopping {
			w.s.cur = s.start(w.g, w.s, w.rev, w.spec, false)
		}
	case *reloadRequest:
		s.queue(e)
	case evStop:
		s.stopping = true
	}
	s.publish()
}

// drain stops every worker and waits until all exited: those serving a
// slot, those a reload was bringing up, and those already told to stop
// (replaced by a reload) whose stop timeout has not run out yet; each is
// killed after its own stop timeout. Stop requests that come meanwhile are
// already being served.
func (s *Supervisor) drain() {
	s.log.Info("Draining workers", "workers", len(s.live))
	for _, g := range s.groups {
		for _, sl := range g.slots {
			// Also the slots' exited workers: a restart must not come.
			s.stopWorker(sl.cur)
			s.stopWorker(sl.next)
		}
	}
	for _, w := range s.live {
		if w.stopping && w != w.s.cur && w != w.s.next {
			s.log.Info("Waiting for a replaced worker to stop", "worker", w.name(), "pid", w.proc.Pid(), "revision", w.rev.revision)
		}
		s.stopWorker(w)
	}
	s.publish()
	for len(s.live) > 0 {
		s.handle(<-s.events)
	}
	s.log.Info("All workers stopped")
}
