package controllers

import (
	"errors"
	"time"

	"github.com/google/go-cmp/cmp/cmpopts"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
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

var _ = DescribeTable("the Available condition",
	func(counts rollout.Counts, want brief) {
		var conds []metav1.Condition
		setAvailableCondition(&conds, counts, 1, t0)
		Expect(briefOf(conds, workersv1alpha1.ConditionAvailable)).To(BeComparableTo(want), "Available")
	},
	Entry("no pods", rollout.Counts{}, brief{metav1.ConditionFalse, workersv1alpha1.ReasonNoPods, "No pod is governed: none that the selector matches is labelled softreload.dev/pool with the pool's name"}),
	Entry("all ready", rollout.Counts{Pods: 3, Ready: 3}, brief{metav1.ConditionTrue, workersv1alpha1.ReasonAllPodsReady, "All 3 pods have every worker ready"}),
	Entry("some not ready", rollout.Counts{Pods: 3, Ready: 2}, brief{metav1.ConditionFalse, workersv1alpha1.ReasonPodsNotReady, "2 of 3 pods have every worker ready"}),
)

// progressCase is one row of the Progressing and Degraded table.
type progressCase struct {
	prev            []metav1.Condition
	in              rolloutState
	now             metav1.Time
	wantProgressing brief
	wantDegraded    brief
	// wantSince is the Progressing condition's lastTransitionTime.
	wantSince metav1.Time
}

// A rollout in progress, and what the table's rows change of it.
var (
	auto, manual = workersv1alpha1.RollbackAuto, workersv1alpha1.RollbackManual
	rollingState = rolloutState{target: "v2", stable: "v1", rollback: auto, deadline: 10 * time.Minute,
		counts: rollout.Counts{Pods: 4, Updated: 1, InFlight: 1}}
	inProgress = metav1.Condition{Type: workersv1alpha1.ConditionProgressing, Status: metav1.ConditionTrue,
		Reason: workersv1alpha1.ReasonRolloutInProgress, LastTransitionTime: t0}
)

func rollingWith(change func(*rolloutState)) rolloutState { s := rollingState; change(&s); return s }

var _ = DescribeTable("the Progressing and Degraded conditions",
	func(tc progressCase) {
		conds := append([]metav1.Condition(nil), tc.prev...)
		setProgressingCondition(&conds, tc.in, 1, tc.now)
		setDegradedCondition(&conds, tc.in, 1, tc.now)
		Expect(briefOf(conds, workersv1alpha1.ConditionProgressing)).To(BeComparableTo(tc.wantProgressing), "Progressing")
		Expect(briefOf(conds, workersv1alpha1.ConditionDegraded)).To(BeComparableTo(tc.wantDegraded), "Degraded")
		for _, c := range conds {
			if c.Type == workersv1alpha1.ConditionProgressing {
				Expect(c.LastTransitionTime.Equal(&tc.wantSince)).To(BeTrue(), "Progressing since %s, want %s", c.LastTransitionTime, tc.wantSince)
			}
		}
	},
	Entry("rolling", progressCase{
		in: rollingState, now: t0,
		wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "1 of 4 pods run revision v2, 1 reloading"},
		wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
		wantSince:       t0,
	}),
	Entry("still rolling without progress keeps the time of the last progress", progressCase{
		prev: []metav1.Condition{inProgress}, in: rollingState, now: t1,
		wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "1 of 4 pods run revision v2, 1 reloading"},
		wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
		wantSince:       t0,
	}),
	Entry("progress restarts the deadline", progressCase{
		prev: []metav1.Condition{inProgress}, in: rollingWith(func(s *rolloutState) { s.progressed = true }), now: t20,
		wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "1 of 4 pods run revision v2, 1 reloading"},
		wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
		wantSince:       t20,
	}),
	Entry("no progress past the deadline is degraded", progressCase{
		prev: []metav1.Condition{inProgress}, in: rollingState, now: t20,
		wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "1 of 4 pods run revision v2, 1 reloading"},
		wantDegraded: brief{metav1.ConditionTrue, workersv1alpha1.ReasonProgressDeadlineExceeded,
			"The rollout of revision v2 made no progress in 10m0s; 1 pods are still reloading"},
		wantSince: t0,
	}),
	Entry("complete", progressCase{
		in: rollingWith(func(s *rolloutState) { s.complete, s.counts = true, rollout.Counts{Pods: 4, Updated: 4} }), now: t1,
		wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonRolloutComplete, "All 4 pods run revision v2"},
		wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
		wantSince:       t1,
	}),
	Entry("paused is not degraded however long", progressCase{
		prev: []metav1.Condition{inProgress}, in: rollingWith(func(s *rolloutState) { s.paused = true }), now: t20,
		wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonRolloutPaused, "Paused with 1 of 4 pods on revision v2"},
		wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
		wantSince:       t20,
	}),
	Entry("a new failure names the pod and its message", progressCase{
		in:              rollingWith(func(s *rolloutState) { s.halted, s.failure = true, "pod web-2 failed to reload revision v2: exit 1" }),
		now:             t1,
		wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonRolledBack, "Rolling back to revision v1 after revision v2 failed"},
		wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "pod web-2 failed to reload revision v2: exit 1"},
		wantSince:       t1,
	}),
	Entry("a recorded failure keeps its first message", progressCase{
		prev: []metav1.Condition{{Type: workersv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue,
			Reason: workersv1alpha1.ReasonReloadFailed, Message: "pod web-2 failed to reload revision v2: exit 1", LastTransitionTime: t0}},
		in:              rollingWith(func(s *rolloutState) { s.halted, s.rolledBack = true, true }),
		now:             t1,
		wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonRolledBack, "Rolled back to revision v1 after revision v2 failed"},
		wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "pod web-2 failed to reload revision v2: exit 1"},
		wantSince:       t1,
	}),
	Entry("manual holds", progressCase{
		in:              rollingWith(func(s *rolloutState) { s.halted, s.rollback = true, manual }),
		now:             t1,
		wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonReloadFailed, "Revision v2 failed; the rollout holds until the code or the spec changes"},
		wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "Revision v2 failed"},
		wantSince:       t1,
	}),
	Entry("auto with nowhere to go back to holds", progressCase{
		in:              rollingWith(func(s *rolloutState) { s.halted, s.stable = true, "" }),
		now:             t1,
		wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonReloadFailed, "Revision v2 failed; the rollout holds until the code or the spec changes"},
		wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "Revision v2 failed"},
		wantSince:       t1,
	}),
	Entry("missing code", progressCase{
		in:              rolloutState{blocked: *codeNotFound("web-code")},
		now:             t1,
		wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonCodeSourceNotFound, "ConfigMap web-code (spec.code.configMapRef) does not exist"},
		wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonCodeSourceNotFound, "ConfigMap web-code (spec.code.configMapRef) does not exist"},
		wantSince:       t1,
	}),
	Entry("a ConfigMap in the snapshot's place", progressCase{
		prev: []metav1.Condition{inProgress}, in: rolloutState{blocked: *snapshotNameTaken("web-v3", "web", "v3")},
		now:             t1,
		wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonSnapshotNameTaken, "ConfigMap web-v3 is in the way of the snapshot of revision v3: it is not labelled softreload.dev/pool-name=web, softreload.dev/revision=v3; rename or delete it"},
		wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonSnapshotNameTaken, "ConfigMap web-v3 is in the way of the snapshot of revision v3: it is not labelled softreload.dev/pool-name=web, softreload.dev/revision=v3; rename or delete it"},
		wantSince:       t1,
	}),
	Entry("code too large for a snapshot", progressCase{
		in:              rolloutState{blocked: *codeTooLarge("web-code", 1048577)},
		now:             t1,
		wantProgressing: brief{metav1.ConditionFalse, workersv1alpha1.ReasonCodeTooLarge, "ConfigMap web-code (spec.code.configMapRef) holds 1048577 bytes of code, more than the 1048576 bytes a ConfigMap, and so a revision snapshot, may hold: ship code this large in a code image (spec.code.image)"},
		wantDegraded:    brief{metav1.ConditionTrue, workersv1alpha1.ReasonCodeTooLarge, "ConfigMap web-code (spec.code.configMapRef) holds 1048577 bytes of code, more than the 1048576 bytes a ConfigMap, and so a revision snapshot, may hold: ship code this large in a code image (spec.code.image)"},
		wantSince:       t1,
	}),
	Entry("waiting for the agents' access is progress, not a problem", progressCase{
		prev: []metav1.Condition{inProgress}, in: rollingWith(func(s *rolloutState) { s.accessWait = "pod web-1 waits" }), now: t1,
		wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonWaitingForAgentAccess, "1 of 4 pods run revision v2, 1 reloading; pod web-1 waits"},
		wantDegraded:    brief{metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""},
		wantSince:       t0,
	}),
	Entry("waiting for access past the deadline is degraded", progressCase{
		prev: []metav1.Condition{inProgress}, in: rollingWith(func(s *rolloutState) { s.accessWait = "pod web-1 waits" }), now: t20,
		wantProgressing: brief{metav1.ConditionTrue, workersv1alpha1.ReasonWaitingForAgentAccess, "1 of 4 pods run revision v2, 1 reloading; pod web-1 waits"},
		wantDegraded: brief{metav1.ConditionTrue, workersv1alpha1.ReasonProgressDeadlineExceeded,
			"The rollout of revision v2 made no progress in 10m0s; 1 pods are still reloading"},
		wantSince: t0,
	}),
)

// A problem found before the pods were planned sets the conditions and
// leaves what the pods said (counts, Available, history) as it was.
var _ = It("sets only the conditions for a problem found before the pods were planned", func() {
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
	Expect(st.ObservedGeneration).To(BeEquivalentTo(4), "observedGeneration")
	want := brief{metav1.ConditionTrue, workersv1alpha1.ReasonInvalidSelector,
		`spec.selector is not a valid label selector: "Sometimes" is not a valid label selector operator`}
	Expect(briefOf(st.Conditions, workersv1alpha1.ConditionDegraded)).To(BeComparableTo(want), "Degraded")
	want.Status = metav1.ConditionFalse
	Expect(briefOf(st.Conditions, workersv1alpha1.ConditionProgressing)).To(BeComparableTo(want), "Progressing")
	unchanged := s.before.Status.DeepCopy()
	unchanged.ObservedGeneration, unchanged.Conditions = st.ObservedGeneration, st.Conditions
	Expect(st).To(BeComparableTo(*unchanged), "the status changed beyond the conditions")
})

// historyCase is one row of the history table.
type historyCase struct {
	history []workersv1alpha1.RevisionRecord
	u       historyUpdate
	limit   int
	want    []workersv1alpha1.RevisionRecord
}

func rec(rev, result string) workersv1alpha1.RevisionRecord {
	return workersv1alpha1.RevisionRecord{Revision: rev, Result: result, CreatedAt: t0}
}

var _ = DescribeTable("the revision history",
	func(tc historyCase) {
		Expect(updateHistory(tc.history, tc.u, tc.limit)).To(BeComparableTo(tc.want, cmpopts.EquateEmpty()), "updateHistory")
	},
	Entry("a new target goes first and supersedes an unfinished one", historyCase{
		history: []workersv1alpha1.RevisionRecord{rec("v2", ""), rec("v1", ResultComplete)},
		u:       historyUpdate{target: "v3", cause: CauseCodeChanged, source: "ConfigMap c", now: t1}, limit: 5,
		want: []workersv1alpha1.RevisionRecord{
			{Revision: "v3", Cause: CauseCodeChanged, Source: "ConfigMap c", CreatedAt: t1},
			rec("v2", ResultSuperseded), rec("v1", ResultComplete)},
	}),
	Entry("complete", historyCase{
		history: []workersv1alpha1.RevisionRecord{rec("v2", "")},
		u:       historyUpdate{target: "v2", complete: true, now: t1}, limit: 5,
		want: []workersv1alpha1.RevisionRecord{{Revision: "v2", Result: ResultComplete, CreatedAt: t0, CompletedAt: &t1}},
	}),
	Entry("failed, then rolled back", historyCase{
		history: []workersv1alpha1.RevisionRecord{rec("v2", ResultFailed)},
		u:       historyUpdate{target: "v2", rolledBack: true, now: t1}, limit: 5,
		want: []workersv1alpha1.RevisionRecord{rec("v2", ResultRolledBack)},
	}),
	Entry("a failure is not overwritten by completion", historyCase{
		history: []workersv1alpha1.RevisionRecord{rec("v2", ResultFailed)},
		u:       historyUpdate{target: "v2", complete: true, now: t1}, limit: 5,
		want: []workersv1alpha1.RevisionRecord{rec("v2", ResultFailed)},
	}),
	Entry("an old revision coming back moves to the front", historyCase{
		history: []workersv1alpha1.RevisionRecord{rec("v2", ResultComplete), rec("v1", ResultComplete)},
		u:       historyUpdate{target: "v1", cause: CauseRollback, now: t1}, limit: 5,
		want: []workersv1alpha1.RevisionRecord{{Revision: "v1", Cause: CauseRollback, CreatedAt: t1}, rec("v2", ResultComplete)},
	}),
	Entry("trimmed to the limit", historyCase{
		history: []workersv1alpha1.RevisionRecord{rec("v2", ResultComplete), rec("v1", ResultComplete)},
		u:       historyUpdate{target: "v3", now: t1}, limit: 2,
		want: []workersv1alpha1.RevisionRecord{{Revision: "v3", CreatedAt: t1}, rec("v2", ResultComplete)},
	}),
	Entry("no target leaves the history", historyCase{
		history: []workersv1alpha1.RevisionRecord{rec("v1", ResultComplete)},
		u:       historyUpdate{now: t1}, limit: 5,
		want: []workersv1alpha1.RevisionRecord{rec("v1", ResultComplete)},
	}),
)

var baseSpec = poolrevision.Spec{Groups: []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"a"}}}}

var _ = DescribeTable("the cause of a new revision",
	func(next poolrevision.Spec, want string) {
		Expect(causeBetween(baseSpec, next)).To(Equal(want), "causeBetween")
	},
	Entry("same spec: the code changed", baseSpec, CauseCodeChanged),
	Entry("restart stamp", poolrevision.Spec{Groups: baseSpec.Groups, RestartedAt: "now"}, CauseRestart),
	Entry("groups", poolrevision.Spec{Groups: []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"b"}}}}, CauseSpecChanged),
	Entry("image", poolrevision.Spec{Groups: baseSpec.Groups, Image: &workersv1alpha1.ImageCodeSource{Reference: "x"}}, CauseCodeChanged),
)
