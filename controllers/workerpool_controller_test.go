package controllers

import (
	"fmt"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/suite"
)

var _ = It("a rollout completes within its budget", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(10)...)
	f.createPool(maxUnavailable(intstr.FromString("30%")))
	v1 := f.waitComplete(10)

	f.agents.resetMaxInFlight()
	f.editCode(map[string]string{"server.py": "print('v2')"})
	v2 := f.waitRollout(v1, 10)

	Expect(v2).NotTo(Equal(v1), "a code change made no new revision")
	Expect(f.agents.MaxInFlight()).To(SatisfyAll(BeNumerically(">=", 1), BeNumerically("<=", 3)), "the most pods reloading at once: 1 to 3 (30% of 10)")
	for _, name := range podNames(10) {
		Expect(f.agents.sentTo(name)).To(Equal([]string{v1, v2}), "the revisions pod %s was told", name)
	}
	p := f.pool()
	Expect(len(p.Status.History)).To(BeNumerically(">=", 2), "records in the history %+v", p.Status.History)
	Expect(p.Status.History[0]).To(SatisfyAll(HaveField("Revision", v2), HaveField("Result", ResultComplete), HaveField("Cause", CauseCodeChanged)),
		"the history's newest record: the new revision, CodeChanged, Complete")
	Expect(p.Status.History[1]).To(SatisfyAll(HaveField("Revision", v1), HaveField("Result", ResultComplete)),
		"the history's second record: the first revision, Complete")
	Expect(f.condition(workersv1alpha1.ConditionAvailable)).To(HaveField("Status", metav1.ConditionTrue), "Available")
	Expect(f.condition(workersv1alpha1.ConditionDegraded)).To(HaveField("Status", metav1.ConditionFalse), "Degraded")
	for _, reason := range []string{EventRolloutComplete, EventRolloutStarted} {
		got := f.events(reason)
		Expect(len(got)).To(BeNumerically(">=", 2), "%s events %q: want one per revision", reason, got)
	}
	Expect(gauge(podsByState.WithLabelValues(f.ns, poolName, "updated"))).To(BeEquivalentTo(10), "softreload_pods{state=updated}")
	Expect(counter(rolloutsTotal.WithLabelValues(ResultComplete))).To(BeNumerically(">=", 2),
		"softreload_rollouts_total{result=Complete}: at least this spec's 2")
})

// failAt makes the agent of pod fail revisions other than good.
func failAt(pod string, good string) func(string, string) outcome {
	return func(p, rev string) outcome {
		if p == pod && rev != good {
			return fail
		}
		return succeed
	}
}

var _ = It("rolls a failed revision back with rollback Auto", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(5)...)
	f.createPool(rollback(workersv1alpha1.RollbackAuto))
	v1 := f.waitComplete(5)

	f.agents.setBehaviour(failAt("web-2", v1))
	f.editCode(map[string]string{"server.py": "syntax error"})

	degraded := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed)
	Expect(degraded.Message).To(containAll("web-2", "SyntaxError"), "the Degraded message names the pod and its message")
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonRolledBack)
	warnings := f.waitEvent(EventReloadFailed)
	Expect(warnings[0]).To(SatisfyAll(HavePrefix("Warning"), ContainSubstring("web-2")), "the ReloadFailed event is a Warning naming web-2")
	f.waitEvent(EventRolledBack)

	p := f.pool()
	v2 := p.Status.History[0].Revision
	Expect(p.Status.CurrentRevision).To(Equal(v1), "currentRevision after the rollback")
	Expect(p.Status.History[0].Result).To(Equal(ResultRolledBack), "the failed revision's result")
	for _, name := range podNames(5) {
		pod := f.pod(name)
		Expect(pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation]).To(Equal(v1), "pod %s's desired revision after the rollback", name)
		// The budget is 1 and pods move by name: web-3 and web-4 come
		// after the failure and must never have been told the bad revision.
		sent := f.agents.sentTo(name)
		if name == "web-3" || name == "web-4" {
			Expect(sent).NotTo(ContainElement(v2), "pod %s was told the failed revision after the failure", name)
		}
		Expect(strings.Count(strings.Join(sent, ","), v2)).To(BeNumerically("<=", 1), "pod %s was told the failed revision more than once: %v", name, sent)
	}
	Expect(f.condition(workersv1alpha1.ConditionDegraded).Message).To(ContainSubstring("web-2"), "after the rollback Degraded still names web-2")
})

var _ = It("holds a failed revision with rollback Manual", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(5)...)
	f.createPool(rollback(workersv1alpha1.RollbackManual))
	v1 := f.waitComplete(5)

	f.agents.setBehaviour(failAt("web-1", v1))
	f.editCode(map[string]string{"server.py": "syntax error"})
	f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed)
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonReloadFailed)
	v2 := f.pool().Status.History[0].Revision

	// A spec change that makes no new revision: the reconcile that
	// observes it must still hold every pod where it is.
	f.updatePool(func(p *workersv1alpha1.WorkerPool) { p.Spec.Strategy.ProgressDeadlineSeconds = 700 })
	f.waitReconciled()
	want := map[string]string{"web-0": v2, "web-1": v2, "web-2": v1, "web-3": v1, "web-4": v1}
	for name, rev := range want {
		Expect(f.pod(name).Annotations[workersv1alpha1.DesiredRevisionAnnotation]).To(Equal(rev), "pod %s's desired revision: Manual must hold", name)
	}
	Expect(f.pool().Status.History[0].Result).To(Equal(ResultFailed), "history[0]")

	// A new change goes ahead.
	f.agents.setBehaviour(func(string, string) outcome { return succeed })
	f.editCode(map[string]string{"server.py": "print('v3')"})
	v3 := f.waitRollout(v2, 5)
	Expect(v3).NotTo(BeElementOf(v1, v2), "the fix made no new revision")
	f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected)
})

var _ = It("pauses and resumes a rollout", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(4)...)
	f.createPool()
	v1 := f.waitComplete(4)

	f.updatePool(func(p *workersv1alpha1.WorkerPool) { p.Spec.Paused = true })
	f.waitReconciled()
	f.editCode(map[string]string{"server.py": "print('v2')"})
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonRolloutPaused)
	v2 := f.pool().Status.UpdateRevision
	Expect(v2).NotTo(Equal(v1), "the code change made no new revision")
	for _, name := range podNames(4) {
		Expect(f.pod(name).Annotations[workersv1alpha1.DesiredRevisionAnnotation]).To(Equal(v1), "pod %s was moved while paused", name)
	}

	f.updatePool(func(p *workersv1alpha1.WorkerPool) { p.Spec.Paused = false })
	Expect(f.waitComplete(4)).To(Equal(v2), "the revision every pod runs after resuming")
})

var _ = It("keeps the budget across a controller restart mid-rollout", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(8)...)
	f.createPool(maxUnavailable(intstr.FromInt32(2)))
	v1 := f.waitComplete(8)

	// web-0 and web-1 reload; web-2 and web-3 then hang in the middle of
	// their reload while the controller is replaced.
	f.agents.hold(func(pod string) bool { return pod == "web-2" || pod == "web-3" })
	f.agents.resetMaxInFlight()
	f.editCode(map[string]string{"server.py": "print('v2')"})
	Eventually(func() error {
		if st := f.pool().Status; st.UpdateRevision == v1 || st.UpdatedPods != 2 || st.ReloadingPods != 2 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}).Should(Succeed(), "the rollout is half way, two pods reloading")
	f.stopManager()
	f.startManager(clock.RealClock{})
	f.agents.releaseHeld()
	v2 := f.waitComplete(8)

	Expect(f.agents.MaxInFlight()).To(BeNumerically("<=", 2), "pods reloading at once across the restart, budget 2")
	for _, name := range podNames(8) {
		Expect(f.agents.sentTo(name)).To(Equal([]string{v1, v2}), "the revisions pod %s was told: each once", name)
	}
})

var _ = It("goes on as pods are added and removed mid-rollout", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(4)...)
	f.createPool()
	v1 := f.waitComplete(4)

	// web-1's agent goes silent on the new revision: with a budget of 1
	// the rollout can only go on once the pod is gone.
	f.agents.setBehaviour(func(pod, rev string) outcome {
		if pod == "web-1" && rev != v1 {
			return silent
		}
		return succeed
	})
	f.editCode(map[string]string{"server.py": "print('v2')"})
	Eventually(func() error {
		st := f.pool().Status
		if got := f.pod("web-1").Annotations[workersv1alpha1.DesiredRevisionAnnotation]; got != st.UpdateRevision || st.ReloadingPods != 1 {
			return fmt.Errorf("web-1 desired %s, status %+v", got, st)
		}
		return nil
	}).Should(Succeed(), "web-1 is stuck reloading")
	Expect(f.c.Delete(f.ctx, f.pod("web-1"))).To(Succeed())
	f.createPods("web-4", "web-5")
	v2 := f.waitComplete(5)
	for _, name := range []string{"web-0", "web-2", "web-3", "web-4", "web-5"} {
		Expect(f.pod(name).Annotations[workersv1alpha1.DesiredRevisionAnnotation]).To(Equal(v2), "the revision pod %s runs", name)
	}
	for _, name := range []string{"web-4", "web-5"} {
		Expect(f.agents.sentTo(name)).To(Equal([]string{v2}), "new pod %s is told the new revision alone", name)
	}
})

var _ = It("a missing ConfigMap recovers", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createPods(podNames(2)...)
	f.createPool()

	c := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonCodeSourceNotFound)
	Expect(c.Message).To(ContainSubstring(codeName), "the Degraded message names the ConfigMap")
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonCodeSourceNotFound)
	f.waitEvent(EventCodeSourceNotFound)

	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.waitComplete(2)
	f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected)
})

var _ = It("reloads on demand", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(3)...)
	f.createPool()
	v1 := f.waitComplete(3)

	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Annotations = map[string]string{workersv1alpha1.RestartedAtAnnotation: "2026-11-28T13:00:00Z"}
	})
	v2 := f.waitRollout(v1, 3)
	Expect(f.pool().Status.History[0]).To(SatisfyAll(HaveField("Revision", v2), HaveField("Cause", CauseRestart)),
		"history[0]: the new revision, caused by Restart")
	for _, name := range podNames(3) {
		Expect(f.agents.sentTo(name)).To(Equal([]string{v1, v2}), "the revisions pod %s was told", name)
	}
})

var _ = It("in image mode patches only the code container", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	for _, name := range podNames(3) {
		pod := newPod(f.ns, name)
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: injection.CodeContainer, Image: "registry.example/code:v1"})
		Expect(f.c.Create(f.ctx, pod)).To(Succeed())
	}
	image := func(ref string) func(*workersv1alpha1.WorkerPool) {
		return func(p *workersv1alpha1.WorkerPool) {
			p.Spec.Code = workersv1alpha1.CodeSource{Image: &workersv1alpha1.ImageCodeSource{Reference: ref, Path: "/code"}}
		}
	}
	f.createPool(image("registry.example/code:v1"))
	v1 := f.waitComplete(3)
	before := map[string]*corev1.Pod{}
	for _, name := range podNames(3) {
		before[name] = f.pod(name)
	}

	f.updatePool(image("registry.example/code:v2"))
	v2 := f.waitRollout(v1, 3)
	for _, name := range podNames(3) {
		pod := f.pod(name)
		want := before[name].Spec.DeepCopy()
		want.Containers[1].Image = "registry.example/code:v2"
		Expect(pod.Spec).To(BeComparableTo(*want), "pod %s's spec", name)
		Expect(pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation]).To(Equal(v2), "pod %s's desired revision", name)
		// The code container learns what it delivers from these, written
		// with its new image.
		Expect(pod.Annotations).To(SatisfyAll(
			HaveKeyWithValue(workersv1alpha1.CodeImageAnnotation, "registry.example/code:v2"),
			HaveKeyWithValue(workersv1alpha1.CodePathAnnotation, "/code"),
		), "pod %s names the code image and its path", name)
	}
	Expect(f.pool().Status.History[0]).To(SatisfyAll(HaveField("Cause", CauseCodeChanged), HaveField("Source", ContainSubstring("code:v2"))),
		"history[0]: CodeChanged, from the v2 image")
})

var _ = It("snapshots are kept to the history limit", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print(1)"})
	f.createPods(podNames(2)...)
	f.createPool(func(p *workersv1alpha1.WorkerPool) { p.Spec.RevisionHistoryLimit = ptr.To[int32](1) })
	revs := []string{f.waitComplete(2)}
	for i := 2; i <= 4; i++ {
		f.editCode(map[string]string{"server.py": fmt.Sprintf("print(%d)", i)})
		revs = append(revs, f.waitRollout(revs[len(revs)-1], 2))
	}

	// The current revision and one more: the limit.
	want := []string{poolrevision.SnapshotName(poolName, revs[3]), poolrevision.SnapshotName(poolName, revs[2])}
	slices.Sort(want)
	Eventually(func() error {
		list := &corev1.ConfigMapList{}
		if err := f.c.List(f.ctx, list, client.InNamespace(f.ns), client.MatchingLabels{workersv1alpha1.PoolNameLabel: poolName}); err != nil {
			return err
		}
		var got []string
		for _, cm := range list.Items {
			got = append(got, cm.Name)
			if len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].Name != poolName || cm.Immutable == nil || !*cm.Immutable {
				return fmt.Errorf("snapshot %s: owners %+v, immutable %v", cm.Name, cm.OwnerReferences, cm.Immutable)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("snapshots %v, want %v", got, want)
		}
		return nil
	}).Should(Succeed(), "old snapshots are deleted")
})

var _ = It("a rollout without progress past its deadline is degraded", Label(suite.ControlPlane), func() {
	f := newFixture()
	clk := clocktesting.NewFakeClock(time.Now())
	f.startManager(clk)
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(3)...)
	f.createPool(func(p *workersv1alpha1.WorkerPool) { p.Spec.Strategy.ProgressDeadlineSeconds = 30 })
	v1 := f.waitComplete(3)

	f.agents.setBehaviour(func(_, rev string) outcome {
		if rev != v1 {
			return silent
		}
		return succeed
	})
	f.editCode(map[string]string{"server.py": "print('v2')"})
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress)
	Expect(f.condition(workersv1alpha1.ConditionDegraded)).To(HaveField("Status", metav1.ConditionFalse), "Degraded before the deadline")

	clk.Step(31 * time.Second)
	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Annotations = map[string]string{"test.softreload.dev/poke": "1"} // a reconcile now, not at the real deadline
	})
	c := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonProgressDeadlineExceeded)
	Expect(c.Message).To(ContainSubstring("30s"), "the Degraded message says the deadline")
	Expect(f.waitEvent(EventProgressDeadlineExceeded)[0]).To(HavePrefix("Warning"), "the event is a Warning")
})

var _ = It("rollback to a kept revision", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(3)...)
	f.createPool()
	v1 := f.waitComplete(3)
	f.editCode(map[string]string{"server.py": "print('v2')"})
	v2 := f.waitRollout(v1, 3)

	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Annotations = map[string]string{workersv1alpha1.RollbackToAnnotation: v1}
	})
	Expect(f.waitRollout(v2, 3)).To(Equal(v1), "the revision rolled back to")
	Eventually(func() error {
		if v, ok := f.pool().Annotations[workersv1alpha1.RollbackToAnnotation]; ok {
			return fmt.Errorf("%s is still %q", workersv1alpha1.RollbackToAnnotation, v)
		}
		return nil
	}).Should(Succeed(), "the request is removed once recorded")
	Expect(f.pool().Status.History[0]).To(SatisfyAll(HaveField("Revision", v1), HaveField("Cause", CauseRollback)),
		"history[0]: the first revision, caused by Rollback")

	// The rollback holds across reconciles until the code changes.
	f.updatePool(func(p *workersv1alpha1.WorkerPool) { p.Spec.Strategy.ProgressDeadlineSeconds = 700 })
	f.waitReconciled()
	Expect(f.pool().Status.UpdateRevision).To(Equal(v1), "after an unrelated change the rollback holds")
	f.editCode(map[string]string{"server.py": "print('v3')"})
	Expect(f.waitRollout(v1, 3)).NotTo(Equal(v2), "a code change after the rollback went back to the rolled-back revision")
	for _, name := range podNames(3) {
		sent := f.agents.sentTo(name)
		Expect(sent).To(HaveLen(4), "pod %s was told %v, want v1, v2, v1, v3", name, sent)
		Expect(sent[2]).To(Equal(v1), "pod %s was told %v, want v1, v2, v1, v3", name, sent)
	}
})

var _ = It("rollback to a missing revision is refused", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(2)...)
	f.createPool()
	v1 := f.waitComplete(2)

	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Annotations = map[string]string{workersv1alpha1.RollbackToAnnotation: "0000000000000000"}
	})
	Expect(f.waitEvent(EventRollbackRefused)[0]).To(ContainSubstring("0000000000000000"), "the event names the revision")
	Eventually(func() error {
		if _, ok := f.pool().Annotations[workersv1alpha1.RollbackToAnnotation]; ok {
			return fmt.Errorf("still there")
		}
		return nil
	}).Should(Succeed(), "the request is removed")
	Expect(f.pool().Status.CurrentRevision).To(Equal(v1), "currentRevision")
})

func gauge(m interface{ Write(*dto.Metric) error }) float64 {
	GinkgoHelper()
	var out dto.Metric
	Expect(m.Write(&out)).To(Succeed())
	return out.GetGauge().GetValue()
}

func counter(m interface{ Write(*dto.Metric) error }) float64 {
	GinkgoHelper()
	var out dto.Metric
	Expect(m.Write(&out)).To(Succeed())
	return out.GetCounter().GetValue()
}
