package controllers

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"
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
	t := GinkgoT()
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(10)...)
	f.createPool(maxUnavailable(intstr.FromString("30%")))
	v1 := f.waitComplete(10)

	f.agents.resetMaxInFlight()
	f.editCode(map[string]string{"server.py": "print('v2')"})
	v2 := f.waitRollout(v1, 10)

	if v2 == v1 {
		t.Fatalf("a code change made no new revision: %s", v1)
	}
	if got := f.agents.MaxInFlight(); got > 3 || got == 0 {
		t.Errorf("at most %d pods were reloading at once, want 1 to 3 (30%% of 10)", got)
	}
	for _, name := range podNames(10) {
		if got, want := f.agents.sentTo(name), []string{v1, v2}; !slices.Equal(got, want) {
			t.Errorf("pod %s was told %v, want %v", name, got, want)
		}
	}
	p := f.pool()
	if h := p.Status.History; len(h) < 2 || h[0].Revision != v2 || h[0].Result != ResultComplete || h[0].Cause != CauseCodeChanged ||
		h[1].Revision != v1 || h[1].Result != ResultComplete {
		t.Errorf("history = %+v, want %s (CodeChanged, Complete) then %s (Complete)", h, v2, v1)
	}
	if c := f.condition(workersv1alpha1.ConditionAvailable); c.Status != metav1.ConditionTrue {
		t.Errorf("Available = %+v, want True", c)
	}
	if c := f.condition(workersv1alpha1.ConditionDegraded); c.Status != metav1.ConditionFalse {
		t.Errorf("Degraded = %+v, want False", c)
	}
	if got := f.events(EventRolloutComplete); len(got) < 2 {
		t.Errorf("RolloutComplete events = %q, want one per revision", got)
	}
	if got := f.events(EventRolloutStarted); len(got) < 2 {
		t.Errorf("RolloutStarted events = %q, want one per revision", got)
	}
	if got := gauge(podsByState.WithLabelValues(f.ns, poolName, "updated")); got != 10 {
		t.Errorf("softreload_pods{state=updated} = %v, want 10", got)
	}
	if got := counter(rolloutsTotal.WithLabelValues(ResultComplete)); got < 2 {
		t.Errorf("softreload_rollouts_total{result=Complete} = %v, want at least this test's 2", got)
	}
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
	t := GinkgoT()
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(5)...)
	f.createPool(rollback(workersv1alpha1.RollbackAuto))
	v1 := f.waitComplete(5)

	f.agents.setBehaviour(failAt("web-2", v1))
	f.editCode(map[string]string{"server.py": "syntax error"})

	degraded := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed)
	if !strings.Contains(degraded.Message, "web-2") || !strings.Contains(degraded.Message, "SyntaxError") {
		t.Errorf("Degraded message %q does not name the pod and its message", degraded.Message)
	}
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonRolledBack)
	warnings := f.waitEvent(EventReloadFailed)
	if !strings.HasPrefix(warnings[0], "Warning") || !strings.Contains(warnings[0], "web-2") {
		t.Errorf("ReloadFailed event %q, want a Warning naming web-2", warnings[0])
	}
	f.waitEvent(EventRolledBack)

	p := f.pool()
	v2 := p.Status.History[0].Revision
	if p.Status.CurrentRevision != v1 || p.Status.History[0].Result != ResultRolledBack {
		t.Errorf("status = %+v, want currentRevision %s and %s RolledBack", p.Status, v1, v2)
	}
	for _, name := range podNames(5) {
		pod := f.pod(name)
		if got := pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation]; got != v1 {
			t.Errorf("pod %s desired revision %s, want %s after rollback", name, got, v1)
		}
		// The budget is 1 and pods move by name: web-3 and web-4 come
		// after the failure and must never have been told the bad revision.
		sent := f.agents.sentTo(name)
		if (name == "web-3" || name == "web-4") && slices.Contains(sent, v2) {
			t.Errorf("pod %s was told the failed revision after the failure: %v", name, sent)
		}
		if n := strings.Count(strings.Join(sent, ","), v2); n > 1 {
			t.Errorf("pod %s was told %s %d times: %v", name, v2, n, sent)
		}
	}
	if c := f.condition(workersv1alpha1.ConditionDegraded); !strings.Contains(c.Message, "web-2") {
		t.Errorf("after the rollback Degraded says %q, want it to still name web-2", c.Message)
	}
})

var _ = It("holds a failed revision with rollback Manual", Label(suite.ControlPlane), func() {
	t := GinkgoT()
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
		if got := f.pod(name).Annotations[workersv1alpha1.DesiredRevisionAnnotation]; got != rev {
			t.Errorf("pod %s desired revision %s, want %s: Manual must hold", name, got, rev)
		}
	}
	if h := f.pool().Status.History; h[0].Result != ResultFailed {
		t.Errorf("history[0] = %+v, want Failed", h[0])
	}

	// A new change goes ahead.
	f.agents.setBehaviour(func(string, string) outcome { return succeed })
	f.editCode(map[string]string{"server.py": "print('v3')"})
	v3 := f.waitRollout(v2, 5)
	if v3 == v2 || v3 == v1 {
		t.Fatalf("the fix made no new revision")
	}
	f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected)
})

var _ = It("pauses and resumes a rollout", Label(suite.ControlPlane), func() {
	t := GinkgoT()
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
	if v2 == v1 {
		t.Fatalf("the code change made no new revision")
	}
	for _, name := range podNames(4) {
		if got := f.pod(name).Annotations[workersv1alpha1.DesiredRevisionAnnotation]; got != v1 {
			t.Errorf("pod %s was moved to %s while paused", name, got)
		}
	}

	f.updatePool(func(p *workersv1alpha1.WorkerPool) { p.Spec.Paused = false })
	if got := f.waitComplete(4); got != v2 {
		t.Errorf("after resuming every pod runs %s, want %s", got, v2)
	}
})

var _ = It("keeps the budget across a controller restart mid-rollout", Label(suite.ControlPlane), func() {
	t := GinkgoT()
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

	if got := f.agents.MaxInFlight(); got > 2 {
		t.Errorf("%d pods were reloading at once across the restart, budget 2", got)
	}
	for _, name := range podNames(8) {
		if got, want := f.agents.sentTo(name), []string{v1, v2}; !slices.Equal(got, want) {
			t.Errorf("pod %s was told %v, want %v: once each", name, got, want)
		}
	}
})

var _ = It("goes on as pods are added and removed mid-rollout", Label(suite.ControlPlane), func() {
	t := GinkgoT()
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
		if got := f.pod(name).Annotations[workersv1alpha1.DesiredRevisionAnnotation]; got != v2 {
			t.Errorf("pod %s runs %s, want %s", name, got, v2)
		}
	}
	for _, name := range []string{"web-4", "web-5"} {
		if got := f.agents.sentTo(name); !slices.Equal(got, []string{v2}) {
			t.Errorf("new pod %s was told %v, want only %s", name, got, v2)
		}
	}
})

var _ = It("a missing ConfigMap recovers", Label(suite.ControlPlane), func() {
	t := GinkgoT()
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createPods(podNames(2)...)
	f.createPool()

	c := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonCodeSourceNotFound)
	if !strings.Contains(c.Message, codeName) {
		t.Errorf("Degraded message %q does not name the ConfigMap %s", c.Message, codeName)
	}
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonCodeSourceNotFound)
	f.waitEvent(EventCodeSourceNotFound)

	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.waitComplete(2)
	f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected)
})

var _ = It("reloads on demand", Label(suite.ControlPlane), func() {
	t := GinkgoT()
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
	if h := f.pool().Status.History[0]; h.Revision != v2 || h.Cause != CauseRestart {
		t.Errorf("history[0] = %+v, want %s caused by Restart", h, v2)
	}
	for _, name := range podNames(3) {
		if got := f.agents.sentTo(name); !slices.Equal(got, []string{v1, v2}) {
			t.Errorf("pod %s was told %v, want %s then %s", name, got, v1, v2)
		}
	}
})

var _ = It("in image mode patches only the code container", Label(suite.ControlPlane), func() {
	t := GinkgoT()
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
		if diff := cmp.Diff(*want, pod.Spec); diff != "" {
			t.Errorf("pod %s spec (-want +got):\n%s", name, diff)
		}
		if got := pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation]; got != v2 {
			t.Errorf("pod %s desired revision %s, want %s", name, got, v2)
		}
		// The code container learns what it delivers from these, written
		// with its new image.
		if img, path := pod.Annotations[workersv1alpha1.CodeImageAnnotation], pod.Annotations[workersv1alpha1.CodePathAnnotation]; img != "registry.example/code:v2" || path != "/code" {
			t.Errorf("pod %s names code image %q at %q, want registry.example/code:v2 at /code", name, img, path)
		}
	}
	if h := f.pool().Status.History[0]; h.Cause != CauseCodeChanged || !strings.Contains(h.Source, "code:v2") {
		t.Errorf("history[0] = %+v, want CodeChanged from the v2 image", h)
	}
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
	t := GinkgoT()
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
	if c := f.condition(workersv1alpha1.ConditionDegraded); c.Status != metav1.ConditionFalse {
		t.Fatalf("Degraded before the deadline: %+v", c)
	}

	clk.Step(31 * time.Second)
	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Annotations = map[string]string{"test.softreload.dev/poke": "1"} // a reconcile now, not at the real deadline
	})
	c := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonProgressDeadlineExceeded)
	if !strings.Contains(c.Message, "30s") {
		t.Errorf("Degraded message %q does not say the deadline", c.Message)
	}
	if got := f.waitEvent(EventProgressDeadlineExceeded); !strings.HasPrefix(got[0], "Warning") {
		t.Errorf("event %q, want a Warning", got[0])
	}
})

var _ = It("rollback to a kept revision", Label(suite.ControlPlane), func() {
	t := GinkgoT()
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
	if got := f.waitRollout(v2, 3); got != v1 {
		t.Fatalf("rolled back to %s, want %s", got, v1)
	}
	Eventually(func() error {
		if v, ok := f.pool().Annotations[workersv1alpha1.RollbackToAnnotation]; ok {
			return fmt.Errorf("%s is still %q", workersv1alpha1.RollbackToAnnotation, v)
		}
		return nil
	}).Should(Succeed(), "the request is removed once recorded")
	if h := f.pool().Status.History[0]; h.Revision != v1 || h.Cause != CauseRollback {
		t.Errorf("history[0] = %+v, want %s caused by Rollback", h, v1)
	}

	// The rollback holds across reconciles until the code changes.
	f.updatePool(func(p *workersv1alpha1.WorkerPool) { p.Spec.Strategy.ProgressDeadlineSeconds = 700 })
	f.waitReconciled()
	if got := f.pool().Status.UpdateRevision; got != v1 {
		t.Errorf("after an unrelated change the pool rolls %s, want the rollback to %s to hold", got, v1)
	}
	f.editCode(map[string]string{"server.py": "print('v3')"})
	if v3 := f.waitRollout(v1, 3); v3 == v2 {
		t.Errorf("a code change after the rollback went back to %s", v2)
	}
	for _, name := range podNames(3) {
		sent := f.agents.sentTo(name)
		if len(sent) != 4 || sent[2] != v1 {
			t.Errorf("pod %s was told %v, want v1, v2, v1, v3", name, sent)
		}
	}
})

var _ = It("rollback to a missing revision is refused", Label(suite.ControlPlane), func() {
	t := GinkgoT()
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(2)...)
	f.createPool()
	v1 := f.waitComplete(2)

	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Annotations = map[string]string{workersv1alpha1.RollbackToAnnotation: "0000000000000000"}
	})
	if got := f.waitEvent(EventRollbackRefused); !strings.Contains(got[0], "0000000000000000") {
		t.Errorf("event %q does not name the revision", got[0])
	}
	Eventually(func() error {
		if _, ok := f.pool().Annotations[workersv1alpha1.RollbackToAnnotation]; ok {
			return fmt.Errorf("still there")
		}
		return nil
	}).Should(Succeed(), "the request is removed")
	if got := f.pool().Status.CurrentRevision; got != v1 {
		t.Errorf("currentRevision %s, want %s", got, v1)
	}
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
