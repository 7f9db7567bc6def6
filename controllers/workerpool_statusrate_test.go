package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

func TestProgressOnly(t *testing.T) {
	t0, t1 := metav1.NewTime(time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)), metav1.NewTime(time.Date(2026, 12, 2, 8, 0, 1, 0, time.UTC))
	base := workersv1alpha1.WorkerPoolStatus{
		ObservedGeneration: 2, CurrentRevision: "a", UpdateRevision: "b", Pods: 10, UpdatedPods: 3, ReadyPods: 9, ReloadingPods: 1,
		History: []workersv1alpha1.RevisionRecord{{Revision: "b"}, {Revision: "a"}},
		Conditions: []metav1.Condition{{Type: workersv1alpha1.ConditionProgressing, Status: metav1.ConditionTrue,
			Reason: workersv1alpha1.ReasonRolloutInProgress, Message: "3 of 10 pods updated", LastTransitionTime: t0}},
	}
	tests := map[string]struct {
		change func(*workersv1alpha1.WorkerPoolStatus)
		want   bool
	}{
		"more pods updated, a later progress time": {func(st *workersv1alpha1.WorkerPoolStatus) {
			st.UpdatedPods, st.ReloadingPods = 5, 2
			st.Conditions[0].Message, st.Conditions[0].LastTransitionTime = "5 of 10 pods updated", t1
		}, true},
		"the rollout completes": {func(st *workersv1alpha1.WorkerPoolStatus) {
			st.UpdatedPods = 10
			st.Conditions[0].Status, st.Conditions[0].Reason = metav1.ConditionFalse, workersv1alpha1.ReasonRolloutComplete
		}, false},
		"a new revision":            {func(st *workersv1alpha1.WorkerPoolStatus) { st.UpdateRevision = "c" }, false},
		"a new generation observed": {func(st *workersv1alpha1.WorkerPoolStatus) { st.ObservedGeneration = 3 }, false},
		"the history changes": {func(st *workersv1alpha1.WorkerPoolStatus) {
			st.History = append([]workersv1alpha1.RevisionRecord{{Revision: "c"}}, st.History...)
		}, false},
		"a condition appears": {func(st *workersv1alpha1.WorkerPoolStatus) {
			st.Conditions = append(st.Conditions, metav1.Condition{Type: workersv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue})
		}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			after := *base.DeepCopy()
			tc.change(&after)
			if got := progressOnly(base, after); got != tc.want {
				t.Errorf("progressOnly = %v, want %v", got, tc.want)
			}
		})
	}
}
