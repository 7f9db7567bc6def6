package controllers

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// rolling is a status in the middle of a rollout, for progressOnly.
var rolling = func() workersv1alpha1.WorkerPoolStatus {
	t0 := metav1.NewTime(time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC))
	return workersv1alpha1.WorkerPoolStatus{
		ObservedGeneration: 2, CurrentRevision: "a", UpdateRevision: "b", Pods: 10, UpdatedPods: 3, ReadyPods: 9, ReloadingPods: 1,
		History: []workersv1alpha1.RevisionRecord{{Revision: "b"}, {Revision: "a"}},
		Conditions: []metav1.Condition{{Type: workersv1alpha1.ConditionProgressing, Status: metav1.ConditionTrue,
			Reason: workersv1alpha1.ReasonRolloutInProgress, Message: "3 of 10 pods updated", LastTransitionTime: t0}},
	}
}()

var _ = DescribeTable("progressOnly tells a change of progress alone from one worth writing at once",
	func(change func(*workersv1alpha1.WorkerPoolStatus), want bool) {
		after := *rolling.DeepCopy()
		change(&after)
		Expect(progressOnly(rolling, after)).To(Equal(want), "progressOnly")
	},
	Entry("more pods updated, a later progress time", func(st *workersv1alpha1.WorkerPoolStatus) {
		st.UpdatedPods, st.ReloadingPods = 5, 2
		st.Conditions[0].Message = "5 of 10 pods updated"
		st.Conditions[0].LastTransitionTime = metav1.NewTime(time.Date(2026, 12, 2, 8, 0, 1, 0, time.UTC))
	}, true),
	Entry("the rollout completes", func(st *workersv1alpha1.WorkerPoolStatus) {
		st.UpdatedPods = 10
		st.Conditions[0].Status, st.Conditions[0].Reason = metav1.ConditionFalse, workersv1alpha1.ReasonRolloutComplete
	}, false),
	Entry("a new revision", func(st *workersv1alpha1.WorkerPoolStatus) { st.UpdateRevision = "c" }, false),
	Entry("a new generation observed", func(st *workersv1alpha1.WorkerPoolStatus) { st.ObservedGeneration = 3 }, false),
	Entry("the history changes", func(st *workersv1alpha1.WorkerPoolStatus) {
		st.History = append([]workersv1alpha1.RevisionRecord{{Revision: "c"}}, st.History...)
	}, false),
	Entry("the rollout waits for its agents' access", func(st *workersv1alpha1.WorkerPoolStatus) {
		st.Conditions[0].Reason = workersv1alpha1.ReasonWaitingForAgentAccess
	}, true),
	Entry("the rollout is paused", func(st *workersv1alpha1.WorkerPoolStatus) {
		st.Conditions[0].Status, st.Conditions[0].Reason = metav1.ConditionFalse, workersv1alpha1.ReasonRolloutPaused
	}, false),
	Entry("a condition appears", func(st *workersv1alpha1.WorkerPoolStatus) {
		st.Conditions = append(st.Conditions, metav1.Condition{Type: workersv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue})
	}, false),
)

// A pool's progress is written at most once per progressWriteInterval;
// with more than progressWritesPerSecond pools rolling at once, each pool
// less often, so that all of them together write about that many a second.
var _ = Describe("progressWait", func() {
	t0 := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	pool := func(i int) types.NamespacedName {
		return types.NamespacedName{Namespace: "ns", Name: fmt.Sprintf("pool-%d", i)}
	}
	// roll starts n pools rolling, each with its status written at t0.
	roll := func(m *memory, n int) {
		for i := range n {
			m.setRolling(pool(i), rolling)
			m.wroteStatusAt(pool(i), t0)
		}
	}

	It("holds a pool to once per interval", func() {
		m := newMemory()
		Expect(m.progressWait(pool(0), t0)).To(BeZero(), "the first write")
		roll(m, 1)
		Expect(m.progressWait(pool(0), t0.Add(300*time.Millisecond))).To(Equal(progressWriteInterval - 300*time.Millisecond))
		Expect(m.progressWait(pool(0), t0.Add(progressWriteInterval))).To(BeZero())
	})

	DescribeTable("spreads the pools rolling at once over the manager's budget",
		func(pools int, interval time.Duration) {
			m := newMemory()
			roll(m, pools)
			for i := range pools {
				Expect(m.progressWait(pool(i), t0.Add(interval-time.Millisecond))).To(Equal(time.Millisecond), "pool %d, just before its interval is over", i)
				Expect(m.progressWait(pool(i), t0.Add(interval))).To(BeZero(), "pool %d, once its interval is over", i)
			}
		},
		Entry("up to progressWritesPerSecond pools: each once a second", progressWritesPerSecond, time.Second),
		Entry("10 pools: each every 2 s", 10, 2*time.Second),
		Entry("50 pools: each every 10 s", 50, 10*time.Second),
	)

	It("counts only the pools whose rollout is in progress", func() {
		m := newMemory()
		roll(m, 50)
		done := *rolling.DeepCopy()
		done.Conditions[0].Status, done.Conditions[0].Reason = metav1.ConditionFalse, workersv1alpha1.ReasonRolloutComplete
		for i := 1; i < 50; i++ {
			m.setRolling(pool(i), done)
		}
		Expect(m.progressWait(pool(0), t0.Add(progressWriteInterval))).To(BeZero(), "the one pool still rolling")
	})
})
