package controllers

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/rollout"
)

var (
	t0  = metav1.NewTime(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	t1  = metav1.NewTime(t0.Add(time.Minute))
	t20 = metav1.NewTime(t0.Add(20 * time.Minute))
)

// brief is the part of a condition a table states.
type brief struct {
	Status  metav1.ConditionStatus
	Reason  string
	Message string
}

func briefOf(conds []metav1.Condition, typ string) brief {
	for _, c := range conds {
		if c.Type == typ {
			return brief{c.Status, c.Reason, c.Message}
		}
	}
	return brief{}
}

func TestSetAvailableCondition(t *testing.T) {
	cases := map[string]struct {
		counts rollout.Counts
		want   brief
	}{
		"no pods":        {rollout.Counts{}, brief{metav1.ConditionFalse, workersv1alpha1.ReasonNoPods, "No pod is governed: none that the selector matches is labelled softreload.dev/pool with the pool's name"}},
		"all ready":      {rollout.Counts{Pods: 3, Ready: 3}, brief{metav1.ConditionTrue, workersv1alpha1.ReasonAllPodsReady, "All 3 pods have every worker ready"}},
		"some not ready": {rollout.Counts{Pods: 3, Ready: 2}, brief{metav1.ConditionFalse, workersv1alpha1.ReasonPodsNotReady, "2 of 3 pods have every worker ready"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var conds []metav1.Condition
			setAvailableCondition(&conds, tc.counts, 1, t0)
			if diff := cmp.Diff(tc.want, briefOf(conds, workersv1alpha1.ConditionAvailable)); diff != "" {
				t.Errorf("Available (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetProgressingAndDegradedConditions(t *testing.T) {
	auto, manual := workersv1alpha1.RollbackAuto, workersv1alpha1.RollbackManual
	rolling := rolloutState{target: "v2", stable: "v1", rollback: auto, deadline: 10 * time.Minute,
		counts: rollout.Counts{Pods: 4, Updated: 1, InFlight: 1}}
	with := func(change func(*rolloutState)) rolloutState { s := rolling; change(&s); return s }
	inProgress := metav1.Condition{Type: workersv1alpha1.ConditionProgressing, Status: metav1.ConditionTrue,
		Reason: workersv1alpha1.ReasonRolloutInProgress, LastTransitionTime: t0}
	cases := map[string]struct {
		prev            []metav1.Condition
		in              rolloutState
		now             metav1.Time
		wantProgressing brief
		wantDegraded    brief
		// wantSince is the Progressing condition's lastTransitionTime.
		wantSince metav1.Time
	}{
		"rolling": {
			in: rolling, now: t0,
			wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "1 of 4 pods run revision v2, 1 reloading"},
			wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
			wantSince:       t0,
		},
		"still rolling without progress keeps the time of the last progress": {
			prev: []metav1.Condition{inProgress}, in: rolling, now: t1,
			wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "1 of 4 pods run revision v2, 1 reloading"},
			wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
			wantSince:       t0,
		},
		"progress restarts the deadline": {
			prev: []metav1.Condition{inProgress}, in: with(func(s *rolloutState) { s.progressed = true }), now: t20,
			wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "1 of 4 pods run revision v2, 1 reloading"},
			wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
			wantSince:       t20,
		},
		"no progress past the deadline is degraded": {
			prev: []metav1.Condition{inProgress}, in: rolling, now: t20,
			wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "1 of 4 pods run revision v2, 1 reloading"},
			wantDegraded: brief{metav1.ConditionTrue, workersv1alpha1.ReasonProgressDeadlineExceeded,
				"The rollout of revision v2 made no progress in 10m0s; 1 pods are still reloading"},
			wantSince: t0,
		},
		"complete": {
			in: with(func(s *rolloutState) { s.complete, s.counts = true, rollout.Counts{Pods: 4, Updated: 4} }), now: t1,
			wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonRolloutComplete, "All 4 pods run revision v2"},
			wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
			wantSince:       t1,
		},
		"paused is not degraded however long": {
			prev: []metav1.Condition{inProgress}, in: with(func(s *rolloutState) { s.paused = true }), now: t20,
			wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonRolloutPaused, "Paused with 1 of 4 pods on revision v2"},
			wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
			wantSince:       t20,
		},
		"a new failure names the pod and its message": {
			in:              with(func(s *rolloutState) { s.halted, s.failure = true, "pod web-2 failed to reload revision v2: exit 1" }),
			now:             t1,
			wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolledBack, "Rolling back to revision v1 after revision v2 failed"},
			wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "pod web-2 failed to reload revision v2: exit 1"},
			wantSince:       t1,
		},
		"a recorded failure keeps its first message": {
			prev: []metav1.Condition{{Type: workersv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue,
				Reason: workersv1alpha1.ReasonReloadFailed, Message: "pod web-2 failed to reload revision v2: exit 1", LastTransitionTime: t0}},
			in:              with(func(s *rolloutState) { s.halted, s.rolledBack = true, true }),
			now:             t1,
			wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonRolledBack, "Rolled back to revision v1 after revision v2 failed"},
			wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "pod web-2 failed to reload revision v2: exit 1"},
			wantSince:       t1,
		},
		"manual holds": {
			in:              with(func(s *rolloutState) { s.halted, s.rollback = true, manual }),
			now:             t1,
			wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonReloadFailed, "Revision v2 failed; the rollout holds until the code or the spec changes"},
			wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "Revision v2 failed"},
			wantSince:       t1,
		},
		"auto with nowhere to go back to holds": {
			in:              with(func(s *rolloutState) { s.halted, s.stable = true, "" }),
			now:             t1,
			wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonReloadFailed, "Revision v2 failed; the rollout holds until the code or the spec changes"},
			wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "Revision v2 failed"},
			wantSince:       t1,
		},
		"missing code": {
			in:              rolloutState{blocked: *codeNotFound("web-code")},
			now:             t1,
			wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonCodeSourceNotFound, "ConfigMap web-code (spec.code.configMapRef) does not exist"},
			wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonCodeSourceNotFound, "ConfigMap web-code (spec.code.configMapRef) does not exist"},
			wantSince:       t1,
		},
		"a ConfigMap in the snapshot's place": {
			prev: []metav1.Condition{inProgress}, in: rolloutState{blocked: *snapshotNameTaken("web-v3", "web", "v3")},
			now:             t1,
			wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonSnapshotNameTaken, "ConfigMap web-v3 is in the way of the snapshot of revision v3: it is not labelled softreload.dev/pool-name=web, softreload.dev/revision=v3; rename or delete it"},
			wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonSnapshotNameTaken, "ConfigMap web-v3 is in the way of the snapshot of revision v3: it is not labelled softreload.dev/pool-name=web, softreload.dev/revision=v3; rename or delete it"},
			wantSince:       t1,
		},
		"code too large for a snapshot": {
			in:              rolloutState{blocked: *codeTooLarge("web-code", 1048577)},
			now:             t1,
			wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonCodeTooLarge, "ConfigMap web-code (spec.code.configMapRef) holds 1048577 bytes of code, more than the 1048576 bytes a ConfigMap, and so a revision snapshot, may hold: ship code this large in a code image (spec.code.image)"},
			wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonCodeTooLarge, "ConfigMap web-code (spec.code.configMapRef) holds 1048577 bytes of code, more than the 1048576 bytes a ConfigMap, and so a revision snapshot, may hold: ship code this large in a code image (spec.code.image)"},
			wantSince:       t1,
		},
		"waiting for the agents' access is progress, not a problem": {
			prev: []metav1.Condition{inProgress}, in: with(func(s *rolloutState) { s.accessWait = "pod web-1 waits" }), now: t1,
			wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonWaitingForAgentAccess, "1 of 4 pods run revision v2, 1 reloading; pod web-1 waits"},
			wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
			wantSince:       t0,
		},
		"waiting for access past the deadline is degraded": {
			prev: []metav1.Condition{inProgress}, in: with(func(s *rolloutState) { s.accessWait = "pod web-1 waits" }), now: t20,
			wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonWaitingForAgentAccess, "1 of 4 pods run revision v2, 1 reloading; pod web-1 waits"},
			wantDegraded: brief{metav1.ConditionTrue, workersv1alpha1.ReasonProgressDeadlineExceeded,
				"The rollout of revision v2 made no progress in 10m0s; 1 pods are still reloading"},
			wantSince: t0,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			conds := append([]metav1.Condition(nil), tc.prev...)
			setProgressingCondition(&conds, tc.in, 1, tc.now)
			setDegradedCondition(&conds, tc.in, 1, tc.now)
			if diff := cmp.Diff(tc.wantProgressing, briefOf(conds, workersv1alpha1.ConditionProgressing)); diff != "" {
				t.Errorf("Progressing (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantDegraded, briefOf(conds, workersv1alpha1.ConditionDegraded)); diff != "" {
				t.Errorf("Degraded (-want +got):\n%s", diff)
			}
			for _, c := range conds {
				if c.Type == workersv1alpha1.ConditionProgressing && !c.LastTransitionTime.Equal(&tc.wantSince) {
					t.Errorf("Progressing since %s, want %s", c.LastTransitionTime, tc.wantSince)
				}
			}
		})
	}
}

// A problem found before the pods were planned sets the conditions and
// leaves what the pods said (counts, Available, history) as it was.
func TestComputeBlockedStatus(t *testing.T) {
	available := metav1.Condition{Type: workersv1alpha1.ConditionAvailable, Status: metav1.ConditionTrue,
		Reason: workersv1alpha1.ReasonAllPodsReady, Message: "All 3 pods have every worker ready", LastTransitionTime: t0}
	pool := &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Generation: 4},
		Status: workersv1alpha1.WorkerPoolStatus{
			ObservedGeneration: 3, Pods: 3, ReadyPods: 3, UpdatedPods: 3, CurrentRevision: "v1", UpdateRevision: "v1",
			History: []workersv1alpha1.RevisionRecord{{Revision: "v1", Result: ResultComplete}}, Conditions: []metav1.Condition{available},
		},
	}
	s := &scope{pool: pool, before: pool.DeepCopy(), now: t1, blocked: invalidSelector(errors.New(`"Sometimes" is not a valid label selector operator`))}
	computeBlockedStatus(s)
	st := s.pool.Status
	if st.ObservedGeneration != 4 {
		t.Errorf("observedGeneration %d, want 4", st.ObservedGeneration)
	}
	want := brief{metav1.ConditionTrue, workersv1alpha1.ReasonInvalidSelector,
		`spec.selector is not a valid label selector: "Sometimes" is not a valid label selector operator`}
	if diff := cmp.Diff(want, briefOf(st.Conditions, workersv1alpha1.ConditionDegraded)); diff != "" {
		t.Errorf("Degraded (-want +got):\n%s", diff)
	}
	want.Status = metav1.ConditionFalse
	if diff := cmp.Diff(want, briefOf(st.Conditions, workersv1alpha1.ConditionProgressing)); diff != "" {
		t.Errorf("Progressing (-want +got):\n%s", diff)
	}
	unchanged := s.before.Status.DeepCopy()
	unchanged.ObservedGeneration, unchanged.Conditions = st.ObservedGeneration, st.Conditions
	if diff := cmp.Diff(*unchanged, st); diff != "" {
		t.Errorf("the status changed beyond the conditions (-want +got):\n%s", diff)
	}
}

func TestUpdateHistory(t *testing.T) {
	rec := func(rev, result string) workersv1alpha1.RevisionRecord {
		return workersv1alpha1.RevisionRecord{Revision: rev, Result: result, CreatedAt: t0}
	}
	cases := map[string]struct {
		history []workersv1alpha1.RevisionRecord
		u       historyUpdate
		limit   int
		want    []workersv1alpha1.RevisionRecord
	}{
		"a new target goes first and supersedes an unfinished one": {
			history: []workersv1alpha1.RevisionRecord{rec("v2", ""), rec("v1", ResultComplete)},
			u:       historyUpdate{target: "v3", cause: CauseCodeChanged, source: "ConfigMap c", now: t1}, limit: 5,
			want: []workersv1alpha1.RevisionRecord{
				{Revision: "v3", Cause: CauseCodeChanged, Source: "ConfigMap c", CreatedAt: t1},
				rec("v2", ResultSuperseded), rec("v1", ResultComplete)},
		},
		"complete": {
			history: []workersv1alpha1.RevisionRecord{rec("v2", "")},
			u:       historyUpdate{target: "v2", complete: true, now: t1}, limit: 5,
			want: []workersv1alpha1.RevisionRecord{{Revision: "v2", Result: ResultComplete, CreatedAt: t0, CompletedAt: &t1}},
		},
		"failed, then rolled back": {
			history: []workersv1alpha1.RevisionRecord{rec("v2", ResultFailed)},
			u:       historyUpdate{target: "v2", rolledBack: true, now: t1}, limit: 5,
			want: []workersv1alpha1.RevisionRecord{rec("v2", ResultRolledBack)},
		},
		"a failure is not overwritten by completion": {
			history: []workersv1alpha1.RevisionRecord{rec("v2", ResultFailed)},
			u:       historyUpdate{target: "v2", complete: true, now: t1}, limit: 5,
			want: []workersv1alpha1.RevisionRecord{rec("v2", ResultFailed)},
		},
		"an old revision coming back moves to the front": {
			history: []workersv1alpha1.RevisionRecord{rec("v2", ResultComplete), rec("v1", ResultComplete)},
			u:       historyUpdate{target: "v1", cause: CauseRollback, now: t1}, limit: 5,
			want: []workersv1alpha1.RevisionRecord{{Revision: "v1", Cause: CauseRollback, CreatedAt: t1}, rec("v2", ResultComplete)},
		},
		"trimmed to the limit": {
			history: []workersv1alpha1.RevisionRecord{rec("v2", ResultComplete), rec("v1", ResultComplete)},
			u:       historyUpdate{target: "v3", now: t1}, limit: 2,
			want: []workersv1alpha1.RevisionRecord{{Revision: "v3", CreatedAt: t1}, rec("v2", ResultComplete)},
		},
		"no target leaves the history": {
			history: []workersv1alpha1.RevisionRecord{rec("v1", ResultComplete)},
			u:       historyUpdate{now: t1}, limit: 5,
			want: []workersv1alpha1.RevisionRecord{rec("v1", ResultComplete)},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := updateHistory(tc.history, tc.u, tc.limit)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("updateHistory (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCauseBetween(t *testing.T) {
	base := poolrevision.Spec{Groups: []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"a"}}}}
	cases := map[string]struct {
		next poolrevision.Spec
		want string
	}{
		"same spec: the code changed": {base, CauseCodeChanged},
		"restart stamp":               {poolrevision.Spec{Groups: base.Groups, RestartedAt: "now"}, CauseRestart},
		"groups":                      {poolrevision.Spec{Groups: []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"b"}}}}, CauseSpecChanged},
		"image":                       {poolrevision.Spec{Groups: base.Groups, Image: &workersv1alpha1.ImageCodeSource{Reference: "x"}}, CauseCodeChanged},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := causeBetween(base, tc.next); got != tc.want {
				t.Errorf("causeBetween = %s, want %s", got, tc.want)
			}
		})
	}
}
