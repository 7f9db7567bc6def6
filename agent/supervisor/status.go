package supervisor

import (
	"slices"
	"sort"
	"time"

	"github.com/softreload/softreload/api/v1alpha1"
)

// WorkerStatus describes one worker.
type WorkerStatus struct {
	Group    string      `json:"group"`
	Slot     int         `json:"slot"`
	PID      int         `json:"pid"`
	Revision string      `json:"revision"`
	State    WorkerState `json:"state"`
	// Started is when the process started; Since when it entered State.
	Started    time.Time `json:"started"`
	Since      time.Time `json:"since"`
	Restarts   int32     `json:"restarts"`
	Reloadable bool      `json:"reloadable"`
	// Next is true for a worker started by a reload that has not taken
	// its slot over yet.
	Next bool `json:"next,omitempty"`
	// MemoryBytes is the resident memory, when the caller filled it in.
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
}

// recentDrains is how many of a group's last drains GroupStatus's slowest
// drain is taken from.
const recentDrains = 10

// GroupStatus says how a group's workers stopped since the agent started:
// each worker told to stop (replaced by a reload, or drained at shutdown)
// counts once it exited. A worker that honours the stop contract drains
// in a short time and is never killed.
type GroupStatus struct {
	Name string `json:"name"`
	// Spec is the GroupSpecHash of the spec the group's workers run;
	// Outdated, when set, says why the running revision's spec of the group
	// is another (the group is not reloadable). Count, Listen and
	// Reloadable are those of the spec it runs.
	Spec       string                       `json:"spec"`
	Outdated   v1alpha1.GroupOutdatedReason `json:"outdated,omitempty"`
	Count      int32                        `json:"count"`
	Listen     []v1alpha1.ListenAddress     `json:"listen,omitempty"`
	Reloadable bool                         `json:"reloadable"`
	// Stopped counts the workers that were sent their stop signal and
	// exited.
	Stopped int64 `json:"stopped"`
	// Killed counts those of them that were still running when their stop
	// timeout ran out, and were killed (SIGKILL).
	Killed int64 `json:"killed"`
	// LastDrainSeconds is how long the last of them took from its stop
	// signal to its exit; SlowestDrainSeconds the longest of the last 10.
	// Both are 0 while Stopped is 0.
	LastDrainSeconds    float64 `json:"lastDrainSeconds"`
	SlowestDrainSeconds float64 `json:"slowestDrainSeconds"`
}

// Status is a snapshot of the supervisor.
type Status struct {
	// Agent is the report a controller reads (revision, state, counts).
	Agent v1alpha1.AgentStatus `json:"agent"`
	// Workers lists every worker process, by group and slot.
	Workers []WorkerStatus `json:"workers"`
	// Groups says, per group in the config's order, how its workers
	// drained when they were stopped. It is the agent's own and not part
	// of the report a controller reads, which stays small.
	Groups []GroupStatus `json:"groups"`
}

// Killed is how many workers of every group were killed because their stop
// timeout ran out.
func (s Status) Killed() int64 {
	var n int64
	for _, g := range s.Groups {
		n += g.Killed
	}
	return n
}

// PIDs returns the pids of a group's serving workers, by slot.
func (s Status) PIDs(group string) []int {
	var out []int
	for _, w := range s.Workers {
		if w.Group == group && !w.Next {
			out = append(out, w.PID)
		}
	}
	return out
}

// drains are the stops of a group's workers, for GroupStatus.
type drains struct {
	stopped, killed int64
	recent          []time.Duration // the last recentDrains, oldest first
}

// add counts the drain of one worker.
func (d *drains) add(took time.Duration, killed bool) {
	d.stopped++
	if killed {
		d.killed++
	}
	if len(d.recent) == recentDrains {
		d.recent = d.recent[1:]
	}
	d.recent = append(d.recent, took)
}

// status is d as the group's GroupStatus.
func (d *drains) status(name string) GroupStatus {
	gs := GroupStatus{Name: name, Stopped: d.stopped, Killed: d.killed}
	if n := len(d.recent); n > 0 {
		gs.LastDrainSeconds = d.recent[n-1].Seconds()
		gs.SlowestDrainSeconds = slices.Max(d.recent).Seconds()
	}
	return gs
}

// Status returns the latest snapshot. It never blocks.
func (s *Supervisor) Status() Status { return *s.snapshot.Load() }

// Subscribe returns a channel that receives the agent's status each time
// it changes, starting with the current one. Only the newest value is kept
// for a slow reader. cancel ends the subscription.
func (s *Supervisor) Subscribe() (updates <-chan v1alpha1.AgentStatus, cancel func()) {
	ch := make(chan v1alpha1.AgentStatus, 1)
	s.subsMu.Lock()
	s.subs[ch] = struct{}{}
	ch <- s.Status().Agent
	s.subsMu.Unlock()
	return ch, func() {
		s.subsMu.Lock()
		delete(s.subs, ch)
		s.subsMu.Unlock()
	}
}

func (s *Supervisor) allReady() bool {
	for _, g := range s.groups {
		for _, sl := range g.slots {
			if sl.cur == nil || sl.cur.state != WorkerReady {
				return false
			}
		}
	}
	return true
}

// publish stores a new snapshot and tells subscribers if the agent status
// changed.
func (s *Supervisor) publish() {
	st := &Status{Agent: s.agentStatus()}
	for _, g := range s.groups {
		gs := g.drains.status(g.spec.Name)
		gs.Spec, gs.Outdated, gs.Count, gs.Listen, gs.Reloadable = g.hash, g.outdated, g.spec.Count, g.spec.Listen, g.reloadable
		st.Groups = append(st.Groups, gs)
		for _, sl := range g.slots {
			for _, w := range []*worker{sl.cur, sl.next} {
				if w == nil {
					continue
				}
				ws := WorkerStatus{
					Group: g.spec.Name, Slot: sl.index, Revision: w.rev.revision, State: w.state,
					Started: w.started, Since: w.since, Restarts: sl.restarts, Reloadable: g.reloadable, Next: w == sl.next,
				}
				if w.proc != nil && !w.exited {
					ws.PID = w.proc.Pid()
				}
				st.Workers = append(st.Workers, ws)
			}
		}
	}
	sort.SliceStable(st.Workers, func(i, j int) bool {
		a, b := st.Workers[i], st.Workers[j]
		if a.Group != b.Group {
			return s.groupIndex(a.Group) < s.groupIndex(b.Group)
		}
		return a.Slot < b.Slot
	})
	old := s.snapshot.Swap(st)
	if old != nil && old.Agent.Same(st.Agent) {
		return
	}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for ch := range s.subs {
		select {
		case <-ch:
		default:
		}
		ch <- st.Agent
	}
}

func (s *Supervisor) groupIndex(name string) int {
	for i, g := range s.groups {
		if g.spec.Name == name {
			return i
		}
	}
	return -1
}

func (s *Supervisor) agentStatus() v1alpha1.AgentStatus {
	a := v1alpha1.AgentStatus{State: s.state, Running: s.running.revision, Revision: s.running.revision, Message: s.message}
	if s.current != nil {
		a.Revision = s.current.to.revision
	}
	if s.state == v1alpha1.AgentFailed && s.failed != "" {
		a.Revision = s.failed
	}
	for _, g := range s.groups {
		a.Groups = append(a.Groups, v1alpha1.AgentGroupStatus{Name: g.spec.Name, Spec: g.hash, Outdated: g.outdated})
		for _, sl := range g.slots {
			a.Total++
			if sl.cur != nil && sl.cur.state == WorkerReady {
				a.Ready++
			}
		}
	}
	return a
}
