package supervisor

import (
	"errors"
	"fmt"
	"slices"
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

// runsAll reports whether every reloadable worker runs to and is ready.
func (s *Supervisor) runsAll(to target) bool {
	for _, g := range s.groups {
		if !g.reloadable {
			continue
		}
		for _, sl := range g.slots {
			if sl.cur == nil || !sl.cur.rev.same(to) || sl.cur.state != WorkerReady || sl.next != nil {
				return false
			}
		}
	}
	return true
}

type replaced struct {
	g     *group
	slots []*slot
	from  []target
}

// reload replaces every reloadable worker with one running req.to, maxSurge
// at a time, and rolls back the replaced ones if a new worker fails.
func (s *Supervisor) reload(req *reloadRequest) {
	if req.to.groups == nil {
		req.to.groups = s.running.groups // a code-only reload keeps the groups
	}
	if req.to.same(s.running) && s.runsAll(req.to) {
		// Nothing to replace. After a failed reload this is the way back
		// (a rollback asked by a controller): the report says Ready again.
		s.state, s.message, s.failed = v1alpha1.AgentReady, "", ""
		s.publish()
		req.reply(s.agentStatus(), nil)
		return
	}
	began := s.clock.Now()
	s.current = req
	s.state, s.message, s.failed = v1alpha1.AgentReloading, "", ""
	s.publish()
	s.log.Info("Reloading", "revision", req.to.revision, "from", s.running.revision, "replacement", string(s.opts.Strategy.Replacement))

	var done []replaced
	err := s.checkGroups(req.to)
	for _, g := range s.groups {
		if err != nil {
			break
		}
		if !g.reloadable {
			continue
		}
		surge := int(s.opts.Strategy.MaxSurge)
		for i := 0; i < len(g.slots) && err == nil; i += surge {
			batch := g.slots[i:min(i+surge, len(g.slots))]
			var from []target
			for _, sl := range batch {
				from = append(from, sl.cur.rev)
			}
			if err = s.replace(g, batch, req.to); err == nil {
				done = append(done, replaced{g, batch, from})
			}
		}
		if err != nil {
			break
		}
	}
	if errors.Is(err, ErrStopped) {
		s.record(ReloadAborted, began)
		return // Run drains and answers the waiters
	}
	if err != nil {
		var rerr *ReloadError
		if !errors.As(err, &rerr) {
			rerr = &ReloadError{Revision: req.to.revision, Reason: err.Error()}
		}
		s.log.Error("Reload failed, rolling back", "revision", req.to.revision, "reason", rerr.Reason)
		for i := len(done) - 1; i >= 0; i-- {
			r := done[i]
			for j, sl := range r.slots {
				if berr := s.replace(r.g, []*slot{sl}, r.from[j]); berr != nil {
					if errors.Is(berr, ErrStopped) {
						s.record(ReloadAborted, began)
						return
					}
					rerr.Rollback = append(rerr.Rollback, berr.Error())
				}
			}
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
	s.running = req.to
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

// replace replaces the workers of batch with workers running to, in the
// group's order (SurgeFirst or StopFirst). On failure the batch's slots are
// served by their previous revision again and a *ReloadError is returned.
func (s *Supervisor) replace(g *group, batch []*slot, to target) error {
	if s.opts.Strategy.Replacement == v1alpha1.StopFirst {
		return s.replaceStopFirst(g, batch, to)
	}
	return s.replaceSurgeFirst(g, batch, to)
}

func (s *Supervisor) replaceSurgeFirst(g *group, batch []*slot, to target) error {
	cands := make([]*worker, len(batch))
	for i, sl := range batch {
		cands[i] = s.start(g, sl, to, true)
		sl.next = cands[i]
	}
	s.publish()
	if err := s.await(func() bool { return readyOrFailed(cands) }); err != nil {
		return err
	}
	if f := firstFailed(cands); f != nil {
		for _, c := range cands {
			s.stopWorker(c)
		}
		s.publish()
		if err := s.await(func() bool { return allExited(cands) }); err != nil {
			return err
		}
		for _, sl := range batch {
			sl.next = nil
		}
		return s.failure(f)
	}
	olds := make([]*worker, 0, len(batch))
	for i, sl := range batch {
		old := sl.cur
		sl.cur, sl.next, sl.failures = cands[i], nil, 0
		cands[i].candidate = false
		s.stopWorker(old)
		olds = append(olds, old)
	}
	s.publish()
	return s.await(func() bool { return allExited(olds) })
}

func (s *Supervisor) replaceStopFirst(g *group, batch []*slot, to target) error {
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
		cands[i] = s.start(g, sl, to, true)
		sl.cur, sl.failures = cands[i], 0
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
		restored[i] = s.start(g, sl, olds[i].rev, false)
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

// checkGroups refuses a revision whose groups differ from the running ones
// in what a reload cannot change.
func (s *Supervisor) checkGroups(to target) error {
	if to.groups == nil {
		return nil
	}
	fail := func(format string, args ...any) error {
		return &ReloadError{Revision: to.revision, Reason: fmt.Sprintf("revision %s: ", to.revision) +
			fmt.Sprintf(format, args...) + "; that needs a restart of the agent"}
	}
	if len(to.groups) != len(s.groups) {
		return fail("it has %d groups, the agent runs %d", len(to.groups), len(s.groups))
	}
	for _, g := range s.groups {
		n := g.spec.Name
		gs := to.groups[n]
		switch {
		case gs == nil:
			return fail("it has no group %q", n)
		case gs.Count != g.spec.Count:
			return fail("group %q: count %d, the agent runs %d", n, gs.Count, g.spec.Count)
		case *gs.Reloadable != g.reloadable:
			return fail("group %q: reloadable changes", n)
		case !slices.Equal(gs.Listen, g.spec.Listen):
			return fail("group %q: listen changes", n)
		}
	}
	return nil
}
