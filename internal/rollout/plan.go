package rollout

import (
	"cmp"
	"slices"

	"k8s.io/apimachinery/pkg/util/intstr"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// Pod is what the planner knows of one selected pod.
type Pod struct {
	// Name of the pod.
	Name string
	// Desired is the pod's desired-revision annotation, "" when unset.
	Desired string
	// Report is the agent's status annotation, nil when absent or unreadable.
	Report *workersv1alpha1.AgentStatus
}

// Input is everything a plan depends on.
type Input struct {
	// Target is the revision the pool's spec and code make now; "" when it
	// cannot be made (the code ConfigMap is missing).
	Target string
	// Stable is the last revision every pod ran: where a rollback goes.
	Stable string
	// MaxUnavailable is how many pods may be in flight at once (see
	// ResolveMaxUnavailable).
	MaxUnavailable int
	// Paused holds the rollout: no settled pod is moved.
	Paused bool
	// Halted says Target has failed on a pod and that failure is recorded:
	// Target is not rolled any further.
	Halted bool
	// Rollback is what a halted rollout does: Auto moves the pods at Target
	// back to Stable, Manual leaves them.
	Rollback workersv1alpha1.RollbackPolicy
	// Pods are the selected pods that are not being deleted.
	Pods []Pod
}

// Action tells one pod to run one revision.
type Action struct {
	Pod      string
	Revision string
}

// Failure is a pod whose agent reported that Target failed.
type Failure struct {
	Pod     string
	Message string
}

// Counts summarise the pods for the pool's status.
type Counts struct {
	// Pods is how many pods there are.
	Pods int32
	// Updated run Target and report Ready, every group at Target's spec.
	Updated int32
	// Outdated run Target and report Ready, but keep a group that is not
	// reloadable at an older spec (AgentStatus.Outdated): only a new pod
	// runs it at Target's.
	Outdated int32
	// Ready report every worker ready, whatever the revision.
	Ready int32
	// InFlight have a desired revision their agent has not settled on.
	InFlight int32
	// Failed report a failed reload.
	Failed int32
}

// Plan is what to do next.
type Plan struct {
	// Actions are the pods to tell a revision, in order.
	Actions []Action
	// Failure, when set, is a failure of Target that Input.Halted does not
	// record yet. Record it first: the plan then holds every pod where it
	// is, so the failure is never lost between a rollback and its record.
	Failure *Failure
	// Counts describe the pods as they are, before Actions.
	Counts Counts
	// Complete says every pod runs Target and is ready. Never while halted.
	// A pod whose agent keeps a group at an older spec counts: what a
	// reload can change is done (Counts.Outdated says what is not).
	Complete bool
	// RolledBack says a halted rollout with Auto rollback has returned
	// every pod to Stable.
	RolledBack bool
}

// ResolveMaxUnavailable turns maxUnavailable (a number, or a percentage of
// pods rounded down) into a pod count, at least 1. Nil means 1.
func ResolveMaxUnavailable(v *intstr.IntOrString, pods int) int {
	if v == nil {
		return 1
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, pods, false)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// Settled says the pod's agent has finished with its desired revision,
// either way (Ready or Failed).
func Settled(p Pod) bool {
	r := p.Report
	return r != nil && r.Revision == p.Desired &&
		(r.State == workersv1alpha1.AgentReady || r.State == workersv1alpha1.AgentFailed)
}

// InFlight says the pod has been told a revision its agent has not settled
// on yet: it is reloading, or about to.
func InFlight(p Pod) bool { return p.Desired != "" && !Settled(p) }

// Runs says the pod runs rev with every worker ready.
func Runs(p Pod, rev string) bool {
	return rev != "" && p.Desired == rev && p.Report != nil &&
		p.Report.Revision == rev && p.Report.State == workersv1alpha1.AgentReady
}

// FailedAt says the pod's agent reported that rev, its desired revision,
// failed.
func FailedAt(p Pod, rev string) bool {
	return rev != "" && p.Desired == rev && p.Report != nil &&
		p.Report.Revision == rev && p.Report.State == workersv1alpha1.AgentFailed
}

// serving says every worker of the pod is ready, whatever it runs.
func serving(p Pod) bool {
	r := p.Report
	return r != nil && r.Total > 0 && r.Ready >= r.Total
}

// Compute plans the next step of the rollout.
func Compute(in Input) Plan {
	pods := slices.Clone(in.Pods)
	slices.SortFunc(pods, func(a, b Pod) int { return cmp.Compare(a.Name, b.Name) })

	plan := Plan{Counts: count(pods, in.Target)}

	if in.Target != "" && !in.Halted {
		for _, p := range pods {
			if FailedAt(p, in.Target) {
				plan.Failure = &Failure{Pod: p.Name, Message: p.Report.Message}
				return plan
			}
		}
	}

	// Where the pods are going, and which of them may move.
	to, movable := in.Target, func(p Pod) bool { return p.Desired != in.Target }
	switch {
	case in.Target == "":
		to, movable = in.Stable, never
	case in.Halted && in.Rollback == workersv1alpha1.RollbackAuto && in.Stable != "" && in.Stable != in.Target:
		to, movable = in.Stable, func(p Pod) bool { return p.Desired == in.Target }
		plan.RolledBack = all(pods, func(p Pod) bool { return Runs(p, in.Stable) })
	case in.Halted:
		to, movable = cmp.Or(in.Stable, in.Target), never
	case in.Paused:
		movable = never
	}
	if in.Target != "" && !in.Halted {
		plan.Complete = all(pods, func(p Pod) bool { return Runs(p, in.Target) })
	}
	if to == "" {
		return plan
	}

	slots := in.MaxUnavailable
	for _, p := range pods {
		if p.Desired == "" || InFlight(p) {
			slots--
		}
	}
	// A pod with no revision serves nothing yet: it gets one at once.
	for _, p := range pods {
		if p.Desired == "" {
			plan.Actions = append(plan.Actions, Action{Pod: p.Name, Revision: to})
		}
	}
	// Pods in flight first (re-targeting them is free), then pods that are
	// not serving with every worker anyway, then the rest by name.
	candidates := slices.DeleteFunc(slices.Clone(pods), func(p Pod) bool {
		return p.Desired == "" || p.Desired == to || !movable(p)
	})
	slices.SortStableFunc(candidates, func(a, b Pod) int { return cmp.Compare(rank(a), rank(b)) })
	for _, p := range candidates {
		if !InFlight(p) {
			if slots <= 0 {
				continue
			}
			slots--
		}
		plan.Actions = append(plan.Actions, Action{Pod: p.Name, Revision: to})
	}
	return plan
}

func rank(p Pod) int {
	switch {
	case InFlight(p):
		return 0
	case !serving(p):
		return 1
	default:
		return 2
	}
}

func count(pods []Pod, target string) Counts {
	c := Counts{Pods: int32(len(pods))}
	for _, p := range pods {
		switch {
		case Runs(p, target) && len(p.Report.Outdated()) > 0:
			c.Outdated++
		case Runs(p, target):
			c.Updated++
		}
		if serving(p) {
			c.Ready++
		}
		if InFlight(p) {
			c.InFlight++
		}
		if p.Report != nil && p.Report.State == workersv1alpha1.AgentFailed {
			c.Failed++
		}
	}
	return c
}

func never(Pod) bool { return false }

func all(pods []Pod, f func(Pod) bool) bool {
	for _, p := range pods {
		if !f(p) {
			return false
		}
	}
	return true
}
