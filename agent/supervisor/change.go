package supervisor

import (
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"

	"github.com/softreload/softreload/api/v1alpha1"
)

// plan is what a reload changes, group by group, and what it did so far,
// for a rollback.
type plan struct {
	to target
	// changes are the revision's groups, in its order.
	changes []*groupChange
	// removed are the reloadable groups the revision has no more: they
	// drain. kept are those that are not reloadable: they keep running.
	removed, kept []*group
	// bind are the addresses the revision adds, with the group of each.
	bind map[v1alpha1.ListenAddress]string

	// Done so far: the addresses bound, the slots replaced (with their
	// previous workers), the slots started by a larger count or a new
	// group.
	bound    []v1alpha1.ListenAddress
	replaced []replaced
	grown    map[*group]int // the group's slot count before
}

// groupChange is what a revision changes in one of its groups.
type groupChange struct {
	g *group
	// spec is the revision's spec of the group.
	spec *v1alpha1.WorkerGroup
	// added: the agent did not run the group; all its slots start.
	added bool
	// replace are the slots whose worker runs other code or another spec;
	// grow is how many slots a larger count adds; shrink the slots a
	// smaller count stops. All empty for a group that is not reloadable.
	replace []*slot
	grow    int
	shrink  []*slot
}

// replaced is a batch of slots a reload replaced, with the workers that
// served them before.
type replaced struct {
	g     *group
	slots []*slot
	from  []*worker
}

// plan compares to with what runs.
func (s *Supervisor) plan(to target) *plan {
	p := &plan{to: to, bind: map[v1alpha1.ListenAddress]string{}, grown: map[*group]int{}}
	for _, name := range to.order {
		spec := to.groups[name]
		c := &groupChange{g: s.group(name), spec: spec}
		p.changes = append(p.changes, c)
		switch {
		case c.g == nil:
			c.added, c.g = true, newGroup(*spec)
		case !*spec.Reloadable:
			continue
		default:
			n := min(len(c.g.slots), int(spec.Count))
			for _, sl := range c.g.slots[:n] {
				if !sl.runs(to, spec) {
					c.replace = append(c.replace, sl)
				}
			}
			c.grow = max(int(spec.Count)-len(c.g.slots), 0)
			c.shrink = c.g.slots[n:]
		}
		for _, a := range spec.Listen {
			if _, ok := s.files[a]; !ok {
				p.bind[a] = name
			}
		}
	}
	for _, g := range s.groups {
		if to.groups[g.spec.Name] != nil {
			continue
		}
		if g.reloadable {
			p.removed = append(p.removed, g)
		} else {
			p.kept = append(p.kept, g)
		}
	}
	return p
}

// work reports whether p starts or stops a worker, or binds an address.
func (p *plan) work() bool {
	if len(p.bind) > 0 || len(p.removed) > 0 {
		return true
	}
	for _, c := range p.changes {
		if c.added || len(c.replace) > 0 || c.grow > 0 || len(c.shrink) > 0 {
			return true
		}
	}
	return false
}

// runs reports whether the slot's worker serves to's code with spec (its
// count and reloadable flag aside) and is ready: a reload keeps it.
func (sl *slot) runs(to target, spec *v1alpha1.WorkerGroup) bool {
	w := sl.cur
	return w != nil && sl.next == nil && w.state == WorkerReady && w.rev.sameCode(to) && sameProcess(w.spec, spec)
}

// sameProcess reports whether workers of a and b are the same processes:
// the same spec but for the count and the reloadable flag.
func sameProcess(a, b *v1alpha1.WorkerGroup) bool {
	x, y := *a, *b
	x.Count, y.Count = 0, 0
	x.Reloadable, y.Reloadable = nil, nil
	return equality.Semantic.DeepEqual(x, y)
}

func (s *Supervisor) group(name string) *group {
	for _, g := range s.groups {
		if g.spec.Name == name {
			return g
		}
	}
	return nil
}

// apply binds the new addresses, starts the new groups, replaces the
// slots that change and starts the slots a larger count adds, recording
// in p what it did.
func (s *Supervisor) apply(p *plan) error {
	if err := s.bind(p); err != nil {
		return err
	}
	for _, c := range p.changes {
		if c.added {
			p.grown[c.g] = 0
			s.groups = append(s.groups, c.g)
			if err := s.startSlots(c.g, c.g.slots, p.to, c.spec); err != nil {
				return err
			}
			continue
		}
		if err := s.replaceSlots(p, c); err != nil {
			return err
		}
		if c.grow == 0 {
			continue
		}
		p.grown[c.g] = len(c.g.slots)
		var slots []*slot
		for range c.grow {
			sl := &slot{index: len(c.g.slots)}
			c.g.slots = append(c.g.slots, sl)
			slots = append(slots, sl)
		}
		if err := s.startSlots(c.g, slots, p.to, c.spec); err != nil {
			return err
		}
	}
	return nil
}

// bind binds the addresses the revision adds.
func (s *Supervisor) bind(p *plan) error {
	for a, group := range p.bind {
		if s.opts.Sockets == nil {
			return &ReloadError{Revision: p.to.revision, Reason: fmt.Sprintf("group %q: cannot listen on %s: this agent cannot bind addresses after its start", group, a)}
		}
		f, err := s.opts.Sockets.BindAddress(a)
		if err != nil {
			return &ReloadError{Revision: p.to.revision, Reason: fmt.Sprintf("group %q: cannot listen on %s: %v", group, a, err)}
		}
		s.log.Info("Listening on a new address", "group", group, "address", string(a))
		s.files[a] = f
		p.bound = append(p.bound, a)
	}
	return nil
}

// replaceSlots replaces the slots of c that change, maxSurge at a time.
func (s *Supervisor) replaceSlots(p *plan, c *groupChange) error {
	surge := int(s.opts.Strategy.MaxSurge)
	for i := 0; i < len(c.replace); i += surge {
		batch := c.replace[i:min(i+surge, len(c.replace))]
		var from []*worker
		for _, sl := range batch {
			from = append(from, sl.cur)
		}
		if err := s.replace(c.g, batch, p.to, c.spec); err != nil {
			return err
		}
		p.replaced = append(p.replaced, replaced{c.g, batch, from})
	}
	return nil
}

// startSlots starts a worker in each of slots, which have none, and waits
// until all are ready. If one fails, all stop and a *ReloadError says why.
func (s *Supervisor) startSlots(g *group, slots []*slot, to target, spec *v1alpha1.WorkerGroup) error {
	cands, err := s.startNext(g, slots, to, spec)
	if err != nil {
		return err
	}
	for i, sl := range slots {
		sl.cur, sl.next = cands[i], nil
		cands[i].candidate = false
	}
	s.publish()
	return nil
}

// commit stops the slots a smaller count leaves and the groups the
// revision removes, waits until they exited, then makes the revision's
// groups the agent's and closes the addresses no group listens on.
func (s *Supervisor) commit(p *plan) error {
	var stopping []*worker
	stop := func(sl *slot) {
		for _, w := range []*worker{sl.cur, sl.next} {
			if w != nil {
				s.stopWorker(w)
				stopping = append(stopping, w)
			}
		}
	}
	for _, c := range p.changes {
		for _, sl := range c.shrink {
			stop(sl)
		}
	}
	for _, g := range p.removed {
		s.log.Info("Stopping a group the revision removes", "group", g.spec.Name)
		for _, sl := range g.slots {
			stop(sl)
		}
	}
	s.publish()
	if err := s.await(func() bool { return allExited(stopping) }); err != nil {
		return err
	}
	s.adopt(p)
	return nil
}

// adopt makes p's revision and groups the running ones, the workers being
// what p asks, and closes the addresses no group listens on any more.
func (s *Supervisor) adopt(p *plan) {
	groups := make([]*group, 0, len(p.changes)+len(p.kept))
	for _, c := range p.changes {
		g := c.g
		if *c.spec.Reloadable {
			g.slots = g.slots[:c.spec.Count]
			g.spec, g.reloadable, g.outdated = *c.spec, true, ""
		} else {
			// The flag holds from now on; the processes stay as they are.
			g.spec.Reloadable = ptr.To(false)
			g.reloadable, g.outdated = false, ""
			if v1alpha1.GroupSpecHash(g.spec) != v1alpha1.GroupSpecHash(*c.spec) {
				g.outdated = v1alpha1.GroupSpecChanged
			}
		}
		g.hash = v1alpha1.GroupSpecHash(g.spec)
		groups = append(groups, g)
	}
	for _, g := range p.kept {
		g.outdated = v1alpha1.GroupRemoved
		groups = append(groups, g)
	}
	s.groups = groups
	s.running = p.to
	s.closeUnused()
}

// closeUnused closes the agent's socket of every address that no group
// and no live worker listens on.
func (s *Supervisor) closeUnused() {
	used := map[v1alpha1.ListenAddress]bool{}
	for _, g := range s.groups {
		for _, a := range g.spec.Listen {
			used[a] = true
		}
	}
	for _, w := range s.live {
		for _, a := range w.spec.Listen {
			used[a] = true
		}
	}
	for a := range s.files {
		if used[a] {
			continue
		}
		delete(s.files, a)
		if s.opts.Sockets == nil {
			continue // the caller's socket, bound before the start
		}
		if err := s.opts.Sockets.Unbind(a); err != nil {
			s.log.Warn("Could not close an address no group listens on", "address", string(a), "err", err)
			continue
		}
		s.log.Info("Closed an address no group listens on", "address", string(a))
	}
}

// rollback undoes what apply did: the replaced slots are replaced back,
// the slots and groups it started stop, the addresses it bound close. What
// goes wrong on the way is added to rerr. It returns ErrStopped if a stop
// came meanwhile.
func (s *Supervisor) rollback(p *plan, rerr *ReloadError) error {
	for i := len(p.replaced) - 1; i >= 0; i-- {
		r := p.replaced[i]
		for j, sl := range r.slots {
			if err := s.replace(r.g, []*slot{sl}, r.from[j].rev, r.from[j].spec); err != nil {
				if errors.Is(err, ErrStopped) {
					return err
				}
				rerr.Rollback = append(rerr.Rollback, err.Error())
			}
		}
	}
	var stopping []*worker
	for g, n := range p.grown {
		for _, sl := range g.slots[n:] {
			for _, w := range []*worker{sl.cur, sl.next} {
				if w != nil {
					s.stopWorker(w)
					stopping = append(stopping, w)
				}
			}
		}
	}
	s.publish()
	if err := s.await(func() bool { return allExited(stopping) }); err != nil {
		return err
	}
	for g, n := range p.grown {
		g.slots = g.slots[:n]
		if n == 0 {
			s.groups = slices.DeleteFunc(s.groups, func(o *group) bool { return o == g })
		}
	}
	for _, a := range p.bound {
		delete(s.files, a)
		if err := s.opts.Sockets.Unbind(a); err != nil {
			s.log.Warn("Could not close an address of the failed revision", "address", string(a), "err", err)
		}
	}
	return nil
}
