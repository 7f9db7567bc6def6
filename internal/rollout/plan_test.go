package rollout

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// Pod builders: what the pod is told, and what its agent says.

func pod(name, desired string) Pod { return Pod{Name: name, Desired: desired} }

func ready(name, rev string) Pod {
	return Pod{Name: name, Desired: rev, Report: &workersv1alpha1.AgentStatus{
		Revision: rev, Running: rev, State: workersv1alpha1.AgentReady, Ready: 2, Total: 2}}
}

func reloading(name, rev string) Pod {
	return Pod{Name: name, Desired: rev, Report: &workersv1alpha1.AgentStatus{
		Revision: rev, State: workersv1alpha1.AgentReloading, Ready: 1, Total: 2}}
}

func failed(name, rev, running, msg string) Pod {
	return Pod{Name: name, Desired: rev, Report: &workersv1alpha1.AgentStatus{
		Revision: rev, Running: running, State: workersv1alpha1.AgentFailed, Ready: 2, Total: 2, Message: msg}}
}

// outdated is ready at rev while keeping group at an older spec.
func outdated(name, rev, group string) Pod {
	p := ready(name, rev)
	p.Report.Groups = []workersv1alpha1.AgentGroupStatus{
		{Name: "http", Spec: "0123456789"}, {Name: group, Spec: "abcdef0123", Outdated: workersv1alpha1.GroupSpecChanged}}
	return p
}

// told is a pod whose desired revision changed and whose agent still
// reports the old one.
func told(p Pod, rev string) Pod { p.Desired = rev; return p }

func acts(pairs ...string) []Action {
	var out []Action
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, Action{Pod: pairs[i], Revision: pairs[i+1]})
	}
	return out
}

func TestCompute(t *testing.T) {
	cases := map[string]struct {
		in   Input
		want Plan
	}{
		"a new target moves settled pods up to the budget, by name": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 2, Pods: []Pod{
				ready("c", "v1"), ready("a", "v1"), ready("b", "v1")}},
			want: Plan{Actions: acts("a", "v2", "b", "v2"), Counts: Counts{Pods: 3, Ready: 3}},
		},
		"pods in flight use the budget": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 2, Pods: []Pod{
				reloading("a", "v2"), ready("b", "v1"), ready("c", "v1")}},
			want: Plan{Actions: acts("b", "v2"), Counts: Counts{Pods: 3, Ready: 2, InFlight: 1}},
		},
		"a silent pod keeps holding its slot": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				told(ready("a", "v1"), "v2"), ready("b", "v1")}},
			want: Plan{Counts: Counts{Pods: 2, Ready: 2, InFlight: 1}},
		},
		"a full budget moves nobody": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				reloading("a", "v2"), ready("b", "v1")}},
			want: Plan{Counts: Counts{Pods: 2, Ready: 1, InFlight: 1}},
		},
		"updated pods free their slots": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				ready("a", "v2"), ready("b", "v1")}},
			want: Plan{Actions: acts("b", "v2"), Counts: Counts{Pods: 2, Updated: 1, Ready: 2}},
		},
		"every pod ready at the target is complete": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				ready("a", "v2"), ready("b", "v2")}},
			want: Plan{Complete: true, Counts: Counts{Pods: 2, Updated: 2, Ready: 2}},
		},
		"a pod that keeps a group at an older spec is complete but not updated": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				ready("a", "v2"), outdated("b", "v2", "gateway")}},
			want: Plan{Complete: true, Counts: Counts{Pods: 2, Updated: 1, Outdated: 1, Ready: 2}},
		},
		"no pods is complete": {
			in:   Input{Target: "v1", MaxUnavailable: 1},
			want: Plan{Complete: true},
		},
		"pods not serving fully go before ready ones": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				ready("a", "v1"), {Name: "b", Desired: "v1", Report: &workersv1alpha1.AgentStatus{
					Revision: "v1", State: workersv1alpha1.AgentReady, Ready: 1, Total: 2}}}},
			want: Plan{Actions: acts("b", "v2"), Counts: Counts{Pods: 2, Ready: 1}},
		},
		"a superseded target re-targets pods in flight for free": {
			in: Input{Target: "v3", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				reloading("a", "v2"), ready("b", "v2"), ready("c", "v1")}},
			want: Plan{Actions: acts("a", "v3"), Counts: Counts{Pods: 3, Ready: 2, InFlight: 1}},
		},
		"a pod in flight to the target keeps its slot and is left alone": {
			in: Input{Target: "v3", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				reloading("a", "v3"), ready("b", "v2")}},
			want: Plan{Counts: Counts{Pods: 2, Ready: 1, InFlight: 1}},
		},
		"a new pod gets the target at once, and counts against the budget": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				ready("a", "v1"), pod("new", "")}},
			want: Plan{Actions: acts("new", "v2"), Counts: Counts{Pods: 2, Ready: 1}},
		},
		"paused: settled pods stay, a new pod still gets the target": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 5, Paused: true, Pods: []Pod{
				ready("a", "v1"), pod("new", "")}},
			want: Plan{Actions: acts("new", "v2"), Counts: Counts{Pods: 2, Ready: 1}},
		},
		"paused with every pod at the target is complete": {
			in:   Input{Target: "v2", Stable: "v1", MaxUnavailable: 5, Paused: true, Pods: []Pod{ready("a", "v2")}},
			want: Plan{Complete: true, Counts: Counts{Pods: 1, Updated: 1, Ready: 1}},
		},
		"paused does not complete a rollout that is not done": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 5, Paused: true, Pods: []Pod{
				ready("a", "v1")}},
			want: Plan{Counts: Counts{Pods: 1, Ready: 1}},
		},
		"a failure not yet recorded holds every pod": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 3, Rollback: workersv1alpha1.RollbackAuto, Pods: []Pod{
				failed("a", "v2", "v1", "worker http-0 exited: SyntaxError"), ready("b", "v2"), ready("c", "v1"), pod("new", "")}},
			want: Plan{Failure: &Failure{Pod: "a", Message: "worker http-0 exited: SyntaxError"},
				Counts: Counts{Pods: 4, Updated: 1, Ready: 3, Failed: 1}},
		},
		"a failure of another revision is not this rollout's failure": {
			in: Input{Target: "v3", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				failed("a", "v2", "v1", "exit 1"), ready("b", "v1")}},
			want: Plan{Actions: acts("a", "v3"), Counts: Counts{Pods: 2, Ready: 2, Failed: 1}},
		},
		"auto rollback moves the pods at the target back, within the budget": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Halted: true, Rollback: workersv1alpha1.RollbackAuto, Pods: []Pod{
				failed("a", "v2", "v1", "exit 1"), ready("b", "v2"), ready("c", "v1")}},
			want: Plan{Actions: acts("a", "v1"), Counts: Counts{Pods: 3, Updated: 1, Ready: 3, Failed: 1}},
		},
		"auto rollback re-targets pods still loading the failed revision for free": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Halted: true, Rollback: workersv1alpha1.RollbackAuto, Pods: []Pod{
				failed("a", "v2", "v1", "exit 1"), reloading("b", "v2"), ready("c", "v1")}},
			want: Plan{Actions: acts("b", "v1"), Counts: Counts{Pods: 3, Ready: 2, InFlight: 1, Failed: 1}},
		},
		"auto rollback is done when every pod runs the stable revision": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Halted: true, Rollback: workersv1alpha1.RollbackAuto, Pods: []Pod{
				ready("a", "v1"), ready("b", "v1")}},
			want: Plan{RolledBack: true, Counts: Counts{Pods: 2, Ready: 2}},
		},
		"auto rollback with no stable revision holds": {
			in: Input{Target: "v1", MaxUnavailable: 1, Halted: true, Rollback: workersv1alpha1.RollbackAuto, Pods: []Pod{
				ready("a", "v1"), failed("b", "v1", "", "exit 1"), pod("new", "")}},
			want: Plan{Actions: acts("new", "v1"), Counts: Counts{Pods: 3, Updated: 1, Ready: 2, Failed: 1}},
		},
		"manual rollback holds the pods, a new pod gets the stable revision": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 3, Halted: true, Rollback: workersv1alpha1.RollbackManual, Pods: []Pod{
				failed("a", "v2", "v1", "exit 1"), ready("b", "v2"), ready("c", "v1"), pod("new", "")}},
			want: Plan{Actions: acts("new", "v1"), Counts: Counts{Pods: 4, Updated: 1, Ready: 3, Failed: 1}},
		},
		"no target (code missing) moves nobody, a new pod gets the stable revision": {
			in:   Input{Stable: "v1", MaxUnavailable: 3, Pods: []Pod{ready("a", "v1"), pod("new", "")}},
			want: Plan{Actions: acts("new", "v1"), Counts: Counts{Pods: 2, Ready: 1}},
		},
		"no target and no stable revision does nothing": {
			in:   Input{MaxUnavailable: 3, Pods: []Pod{pod("new", "")}},
			want: Plan{Counts: Counts{Pods: 1}},
		},
		"a pod with no report is in flight: re-targeted, and holding the only slot": {
			in: Input{Target: "v2", Stable: "v1", MaxUnavailable: 1, Pods: []Pod{
				pod("a", "v1"), ready("b", "v1")}},
			want: Plan{Actions: acts("a", "v2"), Counts: Counts{Pods: 2, Ready: 1, InFlight: 1}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := Compute(tc.in)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Compute (-want +got):\n%s", diff)
			}
		})
	}
}

func TestComputeNeverExceedsTheBudget(t *testing.T) {
	// Walk a rollout of 20 pods step by step, letting every pod told a
	// revision settle only every other step: in flight never passes the
	// budget, and the rollout ends complete.
	const n, budget = 20, 3
	pods := make([]Pod, n)
	for i := range pods {
		pods[i] = ready(string(rune('a'+i)), "v1")
	}
	in := Input{Target: "v2", Stable: "v1", MaxUnavailable: budget}
	for step := 0; step < 100; step++ {
		in.Pods = pods
		plan := Compute(in)
		if plan.Complete {
			return
		}
		byName := map[string]int{}
		for i, p := range pods {
			byName[p.Name] = i
		}
		for _, a := range plan.Actions {
			pods[byName[a.Pod]].Desired = a.Revision
		}
		inFlight := 0
		for _, p := range pods {
			if InFlight(p) {
				inFlight++
			}
		}
		if inFlight > budget {
			t.Fatalf("step %d: %d pods in flight, budget %d", step, inFlight, budget)
		}
		if step%2 == 1 {
			for i, p := range pods {
				if InFlight(p) {
					pods[i] = ready(p.Name, p.Desired)
				}
			}
		}
	}
	t.Fatal("the rollout did not complete in 100 steps")
}

func TestResolveMaxUnavailable(t *testing.T) {
	cases := map[string]struct {
		v    *intstr.IntOrString
		pods int
		want int
	}{
		"nil is one":                   {nil, 10, 1},
		"a number":                     {ptr(intstr.FromInt32(3)), 10, 3},
		"a percentage rounds down":     {ptr(intstr.FromString("10%")), 25, 2},
		"at least one":                 {ptr(intstr.FromString("10%")), 5, 1},
		"500 pods at 10%":              {ptr(intstr.FromString("10%")), 500, 50},
		"a bad percentage is one":      {ptr(intstr.FromString("x%")), 10, 1},
		"a number above the pod count": {ptr(intstr.FromInt32(30)), 10, 30},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := ResolveMaxUnavailable(tc.v, tc.pods); got != tc.want {
				t.Errorf("ResolveMaxUnavailable = %d, want %d", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
