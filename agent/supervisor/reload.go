package supervisor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/softreload/softreload/api/v1alpha1"
)

// outputLines is how many of a failed worker's last lines a failure keeps.
const outputLines = 10

// ReloadError says why a reload failed: which worker, why, and the last
// lines it wrote. The workers run the previous revision again.
type ReloadError struct {
	Revision string
	Worker   string
	Reason   string
	Output   []string
	// Rollback lists what went wrong while going back, if anything.
	Rollback []string
}

func (e *ReloadError) Error() string {
	var b strings.Builder
	b.WriteString(e.Reason)
	for _, r := range e.Rollback {
		b.WriteString("; rollback: ")
		b.WriteString(r)
	}
	if len(e.Output) > 0 {
		fmt.Fprintf(&b, "; last output of %s:\n%s", e.Worker, strings.Join(e.Output, "\n"))
	}
	return b.String()
}

// queue records a reload request. While a reload runs, at most one more is
// kept, to the newest revision asked; a request for the revision being
// loaded joins the current reload.
func (s *Supervisor) queue(req *reloadRequest) {
	switch {
	case s.pending != nil:
		s.pending.to = req.to
		s.pending.waiters = append(s.pending.waiters, req.waiters...)
	case s.current != nil && s.current.to.same(req.to):
		s.current.waiters = append(s.current.waiters, req.waiters...)
	default:
		s.pending = req
	}
}

// reload brings the workers to req.to: it binds the addresses the revision
// adds, starts the groups it adds, replaces the workers of reloadable
// groups whose code or spec changes, maxSurge at a time, and starts the
// slots a larger count adds, each proven ready; then it stops the slots a
// smaller count leaves and the groups the revision removes, and closes the
// addresses no group listens on any more. If a new worker fails, all that
// is undone: the replaced workers are replaced back and the new ones stop.
func (s *Supervisor) reload(req *reloadRequest) {
	if req.to.groups == nil {
		// A code-only reload keeps the groups.
		req.to.groups, req.to.order = s.running.groups, s.running.order
	}
	p := s.plan(req.to)
	if !p.work() && req.to.sameCode(s.running) {
		// Nothing to replace. After a failed reload this is the way back
		// (a rollback asked by a controller): the report says Ready again.
		// A revision of the same code may still change the strategy.
		if req.to.strategy != nil {
			s.opts.Strategy = *req.to.strategy
		}
		s.adopt(p)
		s.state, s.message, s.failed = v1alpha1.AgentReady, "", ""
		s.publish()
		req.reply(s.agentStatus(), nil)
		return
	}
	began := s.clock.Now()
	s.current = req
	s.state, s.message, s.failed = v1alpha1.AgentReloading, "", ""
	strategy := s.opts.Strategy
	if req.to.strategy != nil {
		s.opts.Strategy = *req.to.strategy
	}
	s.publish()
	s.log.Info("Reloading", "revision", req.to.revision, "from", s.running.revision, "replacement", string(s.opts.Strategy.Replacement))

	err := s.apply(p)
	if err == nil {
		err = s.commit(p)
	}
	if errors.Is(err, ErrStopped) {
		s.record(ReloadAborted, began)
		return // Run drains and answers the waiters
	}
	if err != nil {
		s.opts.Strategy = strategy
		var rerr *ReloadError
		if !errors.As(err, &rerr) {
			rerr = &ReloadError{Revision: req.to.revision, Reason: err.Error()}
		}
		s.log.Error("Reload failed, rolling back", "revision", req.to.revision, "reason", rerr.Reason)
		if errors.Is(s.rollback(p, rerr), ErrStopped) {
			s.record(ReloadAborted, began)
			return
		}
		s.current = nil
		// The report goes into a pod annotation, which bounds it.
		s.state, s.message, s.failed = v1alpha1.AgentFailed, v1alpha1.ShortenAgentMessage(rerr.Error()), req.to.revision
		s.publish()
		s.record(ReloadFailed, began)
		req.reply(s.agentStatus(), rerr)
		return
	}
	s.current = nil
	s.state = v1alpha1.AgentReady
	s.publish()
	s.record(ReloadSucceeded, began)
	s.log.Info("Reloaded", "revision", req.to.revision, "duration", s.clock.Since(began))
	req.reply(s.agentStatus(), nil)
}

func (s *Supervisor) record(r ReloadResult, began time.Time) {
	if s.opts.Recorder != nil {
		s.opts.Recorder.ReloadFinished(r, s.clock.Since(began))
	}
}

// replace replaces the workers of batch with workers running to with the
// group spec spec, in the strategy's order (SurgeFirst or StopFirst). On
// failure the batch's slots are served by their previous workers' revision
// and spec again and a *ReloadError is returned.
func (s *Supervisor) replace(g *group, batch []*slot, to target, spec *v1alpha1.WorkerGroup) error {
	if s.opts.Strategy.Replacement == v1alpha1.StopFirst {
		return s.replaceStopFirst(g, batch, to, spec)
	}
	return s.replaceSurgeFirst(g, batch, to, spec)
}

func (s *Supervisor) replaceSurgeFirst(g *group, batch []*slot, to target, spec *v1alpha1.WorkerGroup) error {
	cands, err := s.startNext(g, batch, to, spec)
	if err != nil {
		return err
	}
	olds := make([]*worker, 0, len(batch))
	for i, sl := range batch {
		old := sl.cur
		sl.cur, sl.next, sl.backoff = cands[i], nil, nil
		cands[i].candidate = false
		s.stopWorker(old)
		olds = append(olds, old)
	}
	s.publish()
	return s.await(func() bool { return allExited(olds) })
}

// startNext starts a candidate worker of to in each of slots, beside what
// the slot runs, and waits until all are ready. If one fails, all stop, the
// slots are left as they were and a *ReloadError says why.
func (s *Supervisor) startNext(g *group, slots []*slot, to target, spec *v1alpha1.WorkerGroup) ([]*worker, error) {
	cands := make([]*worker, len(slots))
	for i, sl := range slots {
		cands[i] = s.start(g, sl, to, spec, true)
		sl.next = cands[i]
	}
	s.publish()
	if err := s.await(func() bool { return readyOrFailed(cands) }); err != nil {
		return nil, err
	}
	f := firstFailed(cands)
	if f == nil {
		return cands, nil
	}
	for _, c := range cands {
		s.stopWorker(c)
	}
	s.publish()
	if err := s.await(func() bool { return allExited(cands) }); err != nil {
		return nil, err
	}
	for _, sl := range slots {
		sl.next = nil
	}
	return nil, s.failure(f)
}

func (s *Supervisor) replaceStopFirst(g *group, batch []*slot, to target, spec *v1alpha1.WorkerGroup) error {
	olds := make([]*worker, len(batch))
	for i, sl := range batch {
		olds[i] = sl.cur
		s.stopWorker(sl.cur)
	}
	s.publish()
	if err := s.await(func() bool { return allExited(olds) }); err != nil {
		return err
	}
	cands := make([]*worker, len(batch))
	for i, sl := range batch {
		cands[i] = s.start(g, sl, to, spec, true)
		sl.cur, sl.backoff = cands[i], nil
	}
	s.publish()
	if err := s.await(func() bool { return readyOrFailed(cands) }); err != nil {
		return err
	}
	f := firstFailed(cands)
	if f == nil {
		for _, c := range cands {
			c.candidate = false
		}
		return nil
	}
	for _, c := range cands {
		s.stopWorker(c)
	}
	s.publish()
	if err := s.await(func() bool { return allExited(cands) }); err != nil {
		return err
	}
	restored := make([]*worker, len(batch))
	for i, sl := range batch {
		restored[i] = s.start(g, sl, olds[i].rev, olds[i].spec, false)
		sl.cur = restored[i]
	}
	s.publish()
	// A restored worker that fails is restarted like any crashed worker;
	// waiting for it to leave Starting keeps the order of events simple.
	if err := s.await(func() bool {
		for _, r := range restored {
			if r.state == WorkerStarting {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	return s.failure(f)
}

func (s *Supervisor) failure(w *worker) *ReloadError {
	e := &ReloadError{Revision: w.rev.revision, Worker: w.name(), Reason: w.failure}
	if w.proc != nil {
		out := w.proc.Output()
		if len(out) > outputLines {
			out = out[len(out)-outputLines:]
		}
		e.Output = out
	}
	return e
}

func readyOrFailed(ws []*worker) bool {
	if firstFailed(ws) != nil {
		return true
	}
	for _, w := range ws {
		if w.state != WorkerReady {
			return false
		}
	}
	return true
}

func firstFailed(ws []*worker) *worker {
	for _, w := range ws {
		if w.failure != "" {
			return w
		}
	}
	return nil
}
