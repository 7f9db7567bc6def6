package controllers

import (
	"context"
	"fmt"
	"slices"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/suite"
)

// Without the agent-access
// controller nobody lets the agents read the new snapshot, so no pod may be
// told the revision; once it runs, every pod is told, and at the moment it
// is told its agent may read the snapshot.
var _ = It("pods are told only revisions their agents may read", Label(suite.ControlPlane), func() {
	f := newFixture()
	denied := f.watchToldAccess()
	f.startControllers(poolEnv.Config, clock.RealClock{}, false)
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(2)...)
	f.createPool()

	c := f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionTrue, workersv1alpha1.ReasonWaitingForAgentAccess)
	rev := f.pool().Status.UpdateRevision
	Expect(c.Message).To(containAll(poolrevision.SnapshotName(poolName, rev), "service account default"),
		"the Progressing message names the snapshot and the service account")
	for _, name := range podNames(2) {
		Expect(f.agents.sentTo(name)).To(BeEmpty(), "pod %s was told a revision before its agent may read the snapshot", name)
	}

	f.stopManager()
	f.startManager(clock.RealClock{})
	Expect(f.waitComplete(2)).To(Equal(rev), "the completed revision")
	Expect(denied()).To(BeEmpty(), "pods told a revision their agent could not read yet")
})

// watchToldAccess asks, each time a pod of the fixture is told a revision,
// whether its agent may read that revision's snapshot, and returns what
// returns the pods told one it could not.
func (f *fixture) watchToldAccess() func() []string {
	wc, err := client.NewWithWatch(poolEnv.Config, client.Options{Scheme: poolEnv.Scheme})
	Expect(err).To(Succeed())
	w, err := wc.Watch(f.ctx, &corev1.PodList{}, client.InNamespace(f.ns))
	Expect(err).To(Succeed())
	var (
		mu     sync.Mutex
		denied []string
	)
	go func() {
		told := map[string]string{}
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			rev := ""
			if ok {
				rev = pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation]
			}
			if rev == "" || told[pod.Name] == rev {
				continue
			}
			told[pod.Name] = rev
			review := agentaccess.ServiceAccountReview(f.ns, "default", authorizationv1.ResourceAttributes{
				Namespace: f.ns, Verb: "get", Resource: "configmaps", Name: poolrevision.SnapshotName(poolName, rev)})
			err := f.c.Create(f.ctx, review)
			mu.Lock()
			switch {
			case err != nil && f.ctx.Err() == nil:
				denied = append(denied, fmt.Sprintf("%s at %s (asking: %v)", pod.Name, rev, err))
			case err == nil && !review.Status.Allowed:
				denied = append(denied, pod.Name+" at "+rev)
			}
			mu.Unlock()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(denied)
	}
}

// A ConfigMap in the place of the
// revision's snapshot stops the rollout with the ConfigMap named in the
// conditions and a Warning event; removing it lets the rollout go on.
var _ = It("a snapshot name taken is reported", Label(suite.ControlPlane), func() {
	f := newFixture()
	code := map[string]string{"server.py": "print('v1')"}
	f.createCode(code)
	f.createPods(podNames(2)...)
	f.createPool()
	// The revision of the pool as the API server defaulted it.
	rev := poolrevision.Hash(poolrevision.SpecOf(f.pool()), poolrevision.Code{Data: code})
	squatter := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: poolrevision.SnapshotName(poolName, rev)}}
	Expect(f.c.Create(f.ctx, squatter)).To(Succeed())
	f.startManager(clock.RealClock{})

	c := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonSnapshotNameTaken)
	Expect(c.Message).To(ContainSubstring("ConfigMap "+squatter.Name), "the Degraded message names the ConfigMap")
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonSnapshotNameTaken)
	Expect(f.waitEvent(EventSnapshotNameTaken)[0]).To(SatisfyAll(HavePrefix("Warning: "), ContainSubstring(squatter.Name)),
		"the event is a Warning naming the ConfigMap")
	for _, name := range podNames(2) {
		Expect(f.agents.sentTo(name)).To(BeEmpty(), "pod %s was told a revision without a snapshot", name)
	}

	Expect(f.c.Delete(f.ctx, squatter)).To(Succeed())
	Expect(f.waitComplete(2)).To(Equal(rev), "the completed revision")
	f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected)
})

// A quota that leaves no room
// for the snapshot stops the rollout with the snapshot and the API server's
// reason in the conditions and a Warning event; room lets it go on.
var _ = It("a snapshot the API server refuses is reported", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(2)...)
	quota := f.fillConfigMapQuota()
	f.startManager(clock.RealClock{})
	f.createPool()

	c := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonSnapshotNotCreated)
	Expect(c.Message).To(containAll("ConfigMap "+poolName+"-", "exceeded quota"), "the Degraded message names the snapshot and the quota")
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonSnapshotNotCreated)
	Expect(f.waitEvent(EventSnapshotNotCreated)[0]).To(HavePrefix("Warning: "), "the event is a Warning")

	Expect(f.c.Delete(f.ctx, quota)).To(Succeed())
	f.waitComplete(2)
	f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected)
})

// fillConfigMapQuota puts a quota on ConfigMaps in the namespace that is
// used up (as the quota controller, which envtest lacks, would record it),
// and waits until the API server refuses a ConfigMap for it.
func (f *fixture) fillConfigMapQuota() *corev1.ResourceQuota {
	GinkgoHelper()
	name := corev1.ResourceName("count/configmaps")
	list := &corev1.ConfigMapList{}
	Expect(f.c.List(f.ctx, list, client.InNamespace(f.ns))).To(Succeed())
	used := *resource.NewQuantity(int64(len(list.Items)), resource.DecimalSI)
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "configmaps"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{name: used}},
	}
	Expect(f.c.Create(f.ctx, quota)).To(Succeed())
	quota.Status = corev1.ResourceQuotaStatus{Hard: corev1.ResourceList{name: used}, Used: corev1.ResourceList{name: used}}
	Expect(f.c.Status().Update(f.ctx, quota)).To(Succeed())
	Eventually(func() error {
		probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "quota-probe"}}
		err := f.c.Create(f.ctx, probe, client.DryRunAll)
		if apierrors.IsForbidden(err) {
			return nil
		}
		return fmt.Errorf("a ConfigMap is still admitted: %w", err)
	}).Should(Succeed(), "the quota refuses a ConfigMap")
	return quota
}

// A snapshot that exists
// but cannot be read (here its spec is garbled) is not "not kept": the
// request stays, is retried, and the rollback happens once it can be read.
var _ = It("a rollback request waits for an unreadable snapshot", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(2)...)
	f.createPool()
	v1 := f.waitComplete(2)
	f.editCode(map[string]string{"server.py": "print('v2')"})
	v2 := f.waitRollout(v1, 2)

	key := types.NamespacedName{Namespace: f.ns, Name: poolrevision.SnapshotName(poolName, v1)}
	spec := f.setSnapshotSpec(key, "{garbled")
	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Annotations = map[string]string{workersv1alpha1.RollbackToAnnotation: v1}
	})
	Expect(f.waitEvent(EventRollbackPending)[0]).To(ContainSubstring(v1), "the event names the revision")
	Expect(f.events(EventRollbackRefused)).To(BeEmpty(), "the request was refused as if no snapshot were kept")
	Expect(f.pool().Annotations).To(HaveKeyWithValue(workersv1alpha1.RollbackToAnnotation, v1), "the request was dropped")

	f.setSnapshotSpec(key, spec)
	Expect(f.waitRollout(v2, 2)).To(Equal(v1), "the revision rolled back to")
	Eventually(func() error {
		if v, ok := f.pool().Annotations[workersv1alpha1.RollbackToAnnotation]; ok {
			return fmt.Errorf("%s is still %q", workersv1alpha1.RollbackToAnnotation, v)
		}
		return nil
	}).Should(Succeed(), "the request is removed once recorded")
})

// setSnapshotSpec sets the spec annotation of a snapshot (its metadata can
// change; its files cannot) and returns the value it had.
func (f *fixture) setSnapshotSpec(key types.NamespacedName, value string) string {
	GinkgoHelper()
	cm := &corev1.ConfigMap{}
	Expect(f.c.Get(context.Background(), key, cm)).To(Succeed())
	old := cm.Annotations[workersv1alpha1.SnapshotSpecAnnotation]
	cm.Annotations[workersv1alpha1.SnapshotSpecAnnotation] = value
	Expect(f.c.Update(f.ctx, cm)).To(Succeed())
	return old
}

// A selector the API server accepts but
// that is no label selector (an unknown operator) is named in the
// conditions and a Warning event; fixing it lets the rollout go on.
var _ = It("an invalid selector is reported", Label(suite.ControlPlane), func() {
	f := newFixture()
	f.startManager(clock.RealClock{})
	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(2)...)
	f.createPool(func(p *workersv1alpha1.WorkerPool) {
		p.Spec.Selector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "app", Operator: "Sometimes", Values: []string{"web"}},
		}}
	})

	c := f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonInvalidSelector)
	Expect(c.Message).To(containAll("spec.selector", "Sometimes"), "the Degraded message names spec.selector and the operator")
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonInvalidSelector)
	Expect(f.waitEvent(EventInvalidSelector)[0]).To(HavePrefix("Warning: "), "the event is a Warning")

	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Spec.Selector = metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	})
	f.waitComplete(2)
	f.waitCondition(workersv1alpha1.ConditionDegraded, metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected)
})
