package controllers

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/suite"
)

var _ = DescribeTable("the SelectorOverlap condition",
	func(pods []corev1.Pod, want brief) {
		now := metav1.NewTime(time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC))
		pool := &workersv1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Name: "web"}}
		var conds []metav1.Condition
		setSelectorOverlapCondition(&conds, notGovernedOf(pool, pods), 3, now)
		c := meta.FindStatusCondition(conds, workersv1alpha1.ConditionSelectorOverlap)
		Expect(c).NotTo(BeNil(), "no SelectorOverlap condition")
		Expect(brief{c.Status, c.Reason, c.Message}).To(BeComparableTo(want), "SelectorOverlap")
		Expect(c.ObservedGeneration).To(BeEquivalentTo(3), "observedGeneration")
	},
	Entry("every pod governed",
		[]corev1.Pod{labelled("web-0", "web"), labelled("web-1", "web")},
		brief{metav1.ConditionFalse, workersv1alpha1.ReasonNoOverlap, "The pool governs every pod its selector matches"}),
	Entry("a pod without the label",
		[]corev1.Pod{labelled("web-0", "web"), labelled("stray", "")},
		brief{metav1.ConditionTrue, workersv1alpha1.ReasonPodsWithoutPoolLabel,
			"spec.selector also matches pod stray without the softreload.dev/pool label (no agent): this pool never writes to them and they hold no slot of its budget; narrow spec.selector, or label the pods softreload.dev/pool=<pool>"}),
	Entry("pods of two other pools and one without the label",
		[]corev1.Pod{
			labelled("web-0", "web"), labelled("b-1", "b"), labelled("a-3", "a"), labelled("a-1", "a"), labelled("a-0", "a"),
			labelled("a-2", "a"), labelled("stray", ""),
		},
		brief{metav1.ConditionTrue, workersv1alpha1.ReasonPodsOfOtherPools,
			"spec.selector also matches pods a-0, a-1, a-2 and 1 more of WorkerPool a (softreload.dev/pool=a); pod b-1 of WorkerPool b (softreload.dev/pool=b); pod stray without the softreload.dev/pool label (no agent): this pool never writes to them and they hold no slot of its budget; narrow spec.selector, or label the pods softreload.dev/pool=<pool>"}),
	Entry("a pod of another pool being deleted",
		[]corev1.Pod{labelled("web-0", "web"), deleting(labelled("a-0", "a"))},
		brief{metav1.ConditionFalse, workersv1alpha1.ReasonNoOverlap, "The pool governs every pod its selector matches"}),
)

func labelled(name, pool string) corev1.Pod {
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web"}}}
	if pool != "" {
		pod.Labels[workersv1alpha1.PoolLabel] = pool
	}
	return pod
}

func deleting(pod corev1.Pod) corev1.Pod {
	pod.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	return pod
}

// A pool governs only the pods its selector matches that
// carry its name. A selected pod without the label is never told a revision
// and holds no slot of the budget (maxUnavailable 1: it would stall the
// rollout); a second pool with the same selector sends the first pool's
// pods nothing, counts none of them, and says so; the first pool rolls on,
// and deleting the second leaves it as it was.
var _ = It("lets one pool alone govern a pod", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(3)...)
	f.createPool()
	v1 := f.waitComplete(3)
	Expect(f.condition(workersv1alpha1.ConditionSelectorOverlap)).To(
		HaveField("Reason", workersv1alpha1.ReasonNoOverlap), "SelectorOverlap")

	stray := newPod(f.ns, "stray")
	delete(stray.Labels, workersv1alpha1.PoolLabel)
	Expect(f.c.Create(f.ctx, stray)).To(Succeed())
	c := f.waitCondition(workersv1alpha1.ConditionSelectorOverlap, metav1.ConditionTrue, workersv1alpha1.ReasonPodsWithoutPoolLabel)
	Expect(c.Message).To(ContainSubstring("pod stray without the softreload.dev/pool label"), "the SelectorOverlap message names pod stray")
	Expect(f.waitEvent(EventSelectorOverlap)[0]).To(containAll("Warning: ", "pod stray"), "the SelectorOverlap event is a Warning naming pod stray")
	f.editCode(map[string]string{"server.py": "print('v2')"})
	v2 := f.waitRollout(v1, 3)

	intruderCode := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "intruder-code", Namespace: f.ns}, Data: map[string]string{"server.py": "print('intruder')"}}
	Expect(f.c.Create(f.ctx, intruderCode)).To(Succeed())
	intruder := newPool(f.ns, func(p *workersv1alpha1.WorkerPool) {
		p.Name = "intruder"
		p.Spec.Code.ConfigMapRef.Name = intruderCode.Name
	})
	Expect(f.c.Create(f.ctx, intruder)).To(Succeed())
	// The condition is written in the reconcile that would have sent the
	// pods a revision: once it shows, any such write has been made.
	var st workersv1alpha1.WorkerPoolStatus
	Eventually(func() error {
		got := &workersv1alpha1.WorkerPool{}
		if err := f.c.Get(f.ctx, client.ObjectKeyFromObject(intruder), got); err != nil {
			return err
		}
		st = got.Status
		c := meta.FindStatusCondition(st.Conditions, workersv1alpha1.ConditionSelectorOverlap)
		if st.UpdateRevision == "" || c == nil || c.Reason != workersv1alpha1.ReasonPodsOfOtherPools {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}).Should(Succeed(), "the intruder reports the pods it does not govern")
	c = meta.FindStatusCondition(st.Conditions, workersv1alpha1.ConditionSelectorOverlap)
	Expect(c.Message).To(containAll("pods web-0, web-1, web-2 of WorkerPool web (softreload.dev/pool=web)", "pod stray without"),
		"the intruder's SelectorOverlap message")
	Expect(st.Pods).To(BeZero(), "the pods the intruder counts")
	Expect(meta.FindStatusCondition(st.Conditions, workersv1alpha1.ConditionAvailable)).To(
		HaveField("Reason", workersv1alpha1.ReasonNoPods), "the intruder's Available condition")
	Eventually(func() error {
		if got := poolEvents(f, "intruder", EventSelectorOverlap); len(got) == 0 {
			return fmt.Errorf("none")
		}
		return nil
	}).Should(Succeed(), "a SelectorOverlap event of the intruder")
	f.pods(func(pod *corev1.Pod) {
		if pod.Name != "stray" {
			Expect(pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation]).To(Equal(v2), "pod %s is told a revision not of its own pool", pod.Name)
		}
	})

	f.editCode(map[string]string{"server.py": "print('v3')"})
	v3 := f.waitRollout(v2, 3)
	Expect(f.c.Delete(f.ctx, intruder)).To(Succeed())
	Eventually(func() error {
		err := f.c.Get(f.ctx, client.ObjectKeyFromObject(intruder), &workersv1alpha1.WorkerPool{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("get: %w", err)
		}
		return nil
	}).Should(Succeed(), "the intruder is gone")
	f.waitComplete(3)
	for _, name := range podNames(3) {
		Expect(f.agents.sentTo(name)).To(Equal([]string{v1, v2, v3}), "pod %s is told its own pool's revisions alone", name)
	}
	Expect(f.agents.sentTo("stray")).To(BeEmpty(), "pod stray, without the pool label, was told a revision")
	Expect(f.pool().Status).To(SatisfyAll(HaveField("CurrentRevision", v3), HaveField("Pods", BeEquivalentTo(3))),
		"after the intruder's deletion the pool runs the last revision on its 3 pods")

	Expect(f.c.Delete(f.ctx, stray)).To(Succeed())
	f.waitCondition(workersv1alpha1.ConditionSelectorOverlap, metav1.ConditionFalse, workersv1alpha1.ReasonNoOverlap)
})

// pods calls check with every pod of the fixture's namespace.
func (f *fixture) pods(check func(*corev1.Pod)) {
	GinkgoHelper()
	list := &corev1.PodList{}
	Expect(f.c.List(f.ctx, list, client.InNamespace(f.ns))).To(Succeed())
	for i := range list.Items {
		check(&list.Items[i])
	}
}

// poolEvents returns the notes of the events with reason about the named
// pool.
func poolEvents(f *fixture, pool, reason string) []string {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(f.c.List(f.ctx, list, client.InNamespace(f.ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Kind == "WorkerPool" && e.Regarding.Name == pool {
			out = append(out, e.Type+": "+e.Note)
		}
	}
	return out
}
