package controllers

import (
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/rollout"
	"github.com/softreload/softreload/internal/testing/suite"
)

// Pod replacement planning, without a cluster.

var rt0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// rp is a pod for planReplacement: ready at rev, created at rt0+created
// seconds, its gateway group outdated when outdated.
func rp(name, rev string, created int, outdated bool) replacePod {
	rep := &workersv1alpha1.AgentStatus{Revision: rev, Running: rev, State: workersv1alpha1.AgentReady, Ready: 2, Total: 2}
	if outdated {
		rep.Groups = []workersv1alpha1.AgentGroupStatus{{Name: "gateway", Spec: "0123456789", Outdated: workersv1alpha1.GroupSpecChanged}}
	}
	return replacePod{Pod: rollout.Pod{Name: name, Desired: rev, Report: rep}, created: rt0.Add(time.Duration(created) * time.Second)}
}

func reloadingRP(name, rev string, created int) replacePod {
	p := rp(name, rev, created, false)
	p.Report = &workersv1alpha1.AgentStatus{Revision: rev, State: workersv1alpha1.AgentReloading, Ready: 1, Total: 2}
	return p
}

// notServingRP is ready at rev with a worker down.
func notServingRP(name, rev string, created int) replacePod {
	p := rp(name, rev, created, false)
	p.Report.Ready = 1
	return p
}

// outdatedNotServingRP is ready at rev with its gateway group outdated and
// a worker down.
func outdatedNotServingRP(name, rev string, created int) replacePod {
	p := rp(name, rev, created, true)
	p.Report.Ready = 1
	return p
}

func evictedAt(pod string, sec int) workersv1alpha1.PodEviction {
	return workersv1alpha1.PodEviction{Pod: pod, EvictedAt: metav1.NewTime(rt0.Add(time.Duration(sec) * time.Second))}
}

var _ = DescribeTable("planReplacement",
	func(in replaceInput, evict []string, pending []string, waiting string) {
		in.target = cmpOr(in.target, "v2")
		in.policy = workersv1alpha1.PodReplacementPolicy(cmpOr(string(in.policy), string(workersv1alpha1.PodReplacementEvict)))
		in.now = rt0.Add(100 * time.Second)
		in.expiry = 600 * time.Second
		plan := planReplacement(in)
		Expect(plan.evict).To(Equal(evict), "the pods evicted")
		var got []string
		for _, e := range plan.pending {
			got = append(got, e.Pod)
		}
		Expect(got).To(Equal(pending), "the evictions still waiting for their replacements")
		Expect(plan.waiting).To(Equal(waiting), "why no eviction may start")
	},
	Entry("Hold evicts nobody", replaceInput{policy: workersv1alpha1.PodReplacementHold, maxUnavailable: 2,
		pods: []replacePod{rp("a", "v2", 0, true), rp("b", "v2", 0, true)}}, nil, nil, ""),
	Entry("Evict evicts outdated pods up to maxUnavailable, by name", replaceInput{maxUnavailable: 2,
		pods: []replacePod{rp("c", "v2", 0, true), rp("b", "v2", 0, true), rp("a", "v2", 0, true), rp("d", "v2", 0, false)}},
		[]string{"a", "b"}, nil, ""),
	Entry("an eviction waiting for its replacement holds its slot", replaceInput{maxUnavailable: 1,
		evictions: []workersv1alpha1.PodEviction{evictedAt("a", 10)},
		pods:      []replacePod{rp("b", "v2", 0, true), rp("c", "v2", 0, true)}}, nil, []string{"a"}, ""),
	Entry("a new pod not ready yet does not free the slot", replaceInput{maxUnavailable: 1,
		evictions: []workersv1alpha1.PodEviction{evictedAt("a", 10)},
		pods:      []replacePod{reloadingRP("a2", "v2", 11), rp("b", "v2", 0, true)}}, nil, []string{"a"}, ""),
	Entry("a newer pod ready at the target frees the slot", replaceInput{maxUnavailable: 1,
		evictions: []workersv1alpha1.PodEviction{evictedAt("a", 10)},
		pods:      []replacePod{rp("a2", "v2", 10, false), rp("b", "v2", 0, true)}}, []string{"b"}, nil, ""),
	Entry("a new pod matched with an eviction is not taken for a later one of the same second", replaceInput{maxUnavailable: 2,
		evictions: []workersv1alpha1.PodEviction{evictedAt("a", 10), evictedAt("c", 10)},
		pods:      []replacePod{rp("a2", "v2", 10, false), rp("b", "v2", 0, true)}}, []string{"b"}, []string{"c"}, ""),
	Entry("an older current pod is no replacement", replaceInput{maxUnavailable: 1,
		evictions: []workersv1alpha1.PodEviction{evictedAt("a", 10)},
		pods:      []replacePod{rp("x", "v2", 5, false), rp("b", "v2", 0, true)}}, nil, []string{"a"}, ""),
	Entry("one new pod replaces one eviction, the oldest", replaceInput{maxUnavailable: 2,
		evictions: []workersv1alpha1.PodEviction{evictedAt("b", 20), evictedAt("a", 10)},
		pods:      []replacePod{rp("n1", "v2", 21, false), rp("c", "v2", 0, true)}}, []string{"c"}, []string{"b"}, ""),
	Entry("a pod being deleted that no eviction accounts for takes a slot", replaceInput{maxUnavailable: 2,
		pods: []replacePod{{Pod: rollout.Pod{Name: "z"}, terminating: true}, rp("a", "v2", 0, true), rp("b", "v2", 0, true)}},
		[]string{"a"}, nil, ""),
	Entry("a pod not serving with every worker takes a slot", replaceInput{maxUnavailable: 2,
		pods: []replacePod{notServingRP("z", "v2", 0), rp("a", "v2", 0, true), rp("b", "v2", 0, true)}},
		[]string{"a"}, nil, ""),
	Entry("an outdated pod with a worker down goes first, and needs no slot", replaceInput{maxUnavailable: 1,
		pods: []replacePod{rp("a", "v2", 0, true), outdatedNotServingRP("b", "v2", 0)}},
		[]string{"b"}, nil, ""),
	Entry("outdated pods with a worker down, then the others up to maxUnavailable", replaceInput{maxUnavailable: 2,
		pods: []replacePod{rp("a", "v2", 0, true), outdatedNotServingRP("b", "v2", 0), rp("c", "v2", 0, true)}},
		[]string{"b", "a"}, nil, ""),
	Entry("no eviction while pods reload to the target", replaceInput{maxUnavailable: 2,
		pods: []replacePod{rp("a", "v2", 0, true), rp("b", "v1", 0, false)}}, nil, nil, "the pods reload to revision v2 first"),
	Entry("no eviction while a pod reloads", replaceInput{maxUnavailable: 2,
		pods: []replacePod{rp("a", "v2", 0, true), reloadingRP("b", "v2", 0)}}, nil, nil, "the pods reload to revision v2 first"),
	Entry("a new pod reloading does not hold back the next eviction", replaceInput{maxUnavailable: 2,
		evictions: []workersv1alpha1.PodEviction{evictedAt("a", 10)},
		pods:      []replacePod{reloadingRP("a2", "v2", 11), rp("b", "v2", 0, true)}}, []string{"b"}, []string{"a"}, ""),
	Entry("no eviction while paused", replaceInput{maxUnavailable: 2, paused: true,
		pods: []replacePod{rp("a", "v2", 0, true)}}, nil, nil, "the pool is paused"),
	Entry("a request replaces the pods created before it, even with Hold", replaceInput{maxUnavailable: 5,
		policy: workersv1alpha1.PodReplacementHold, requestedAt: rt0.Add(50 * time.Second),
		pods: []replacePod{rp("old", "v2", 10, false), rp("new", "v2", 50, false)}}, []string{"old"}, nil, ""),
	Entry("an eviction whose replacement never came expires after the progress deadline", replaceInput{maxUnavailable: 1,
		evictions: []workersv1alpha1.PodEviction{evictedAt("a", -600)},
		pods:      []replacePod{rp("b", "v2", 0, true)}}, []string{"b"}, nil, ""),
)

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// On the control plane.

// gatewayPool is a pool of an http group and a gateway group that is not
// reloadable, with strategy podReplacement and maxUnavailable.
func gatewayPool(policy workersv1alpha1.PodReplacementPolicy, unavailable int) func(*workersv1alpha1.WorkerPool) {
	return func(p *workersv1alpha1.WorkerPool) {
		p.Spec.Groups = append(p.Spec.Groups, workersv1alpha1.WorkerGroup{
			Name: "gateway", Command: []string{"python3", "gateway.py"}, Reloadable: ptr.To(false),
			Listen: []workersv1alpha1.ListenAddress{"tcp://:9000"},
		})
		p.Spec.Strategy.PodReplacement = policy
		p.Spec.Strategy.MaxUnavailable = ptr.To(intstr.FromInt32(int32(unavailable)))
	}
}

// changeGateway changes the gateway group's env: a change no reload
// applies.
func (f *fixture) changeGateway(value string) {
	GinkgoHelper()
	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Spec.Groups[1].Env = []workersv1alpha1.EnvVar{{Name: "GREETING", Value: value}}
	})
}

// reportOutdatedGateway makes the agents of the pods that exist now report
// their gateway outdated at every revision but first, as an agent does
// when a revision changes a group that is not reloadable; a pod created
// later runs every group at the spec of the revision it starts with.
func (f *fixture) reportOutdatedGateway(first string) {
	GinkgoHelper()
	list := &corev1.PodList{}
	Expect(f.c.List(f.ctx, list, client.InNamespace(f.ns))).To(Succeed())
	old := map[string]bool{}
	for _, p := range list.Items {
		old[p.Name] = true
	}
	f.agents.SetGroups(func(pod, rev string) []workersv1alpha1.AgentGroupStatus {
		groups := []workersv1alpha1.AgentGroupStatus{{Name: "http", Spec: "0123456789"}, {Name: "gateway", Spec: "abcdef0123"}}
		if old[pod] && rev != first {
			groups[1].Outdated = workersv1alpha1.GroupSpecChanged
		}
		return groups
	})
}

// replicaSet plays a workload's controller, which envtest has none of: for
// each pod of the pool deleted, it creates a new one (the name with "-n"),
// running and ready as far as the kubelet is concerned, and it records the
// most pods unavailable at once by replacement: of want pods, those
// missing, being deleted, or new and not yet reporting every worker ready
// (the old pods' reloads in place have their own budget test).
type replicaSet struct {
	f    *fixture
	want int

	mu             sync.Mutex
	pods           map[string]*corev1.Pod
	maxUnavailable int
	replaced       []string
}

func (f *fixture) startReplicaSet(want int) *replicaSet {
	GinkgoHelper()
	rs := &replicaSet{f: f, want: want, pods: map[string]*corev1.Pod{}}
	c, err := client.NewWithWatch(poolEnv.Config, client.Options{Scheme: poolEnv.Scheme})
	Expect(err).NotTo(HaveOccurred(), "creating a watching client")
	w, err := c.Watch(f.ctx, &corev1.PodList{}, client.InNamespace(f.ns))
	Expect(err).NotTo(HaveOccurred(), "watching the pods")
	go func() {
		defer GinkgoRecover()
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			if rs.record(ev.Type, pod) {
				rs.replace(pod)
			}
		}
	}()
	DeferCleanup(w.Stop)
	return rs
}

// record notes the event and says whether the pod is gone.
func (rs *replicaSet) record(typ watch.EventType, pod *corev1.Pod) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if typ == watch.Deleted {
		delete(rs.pods, pod.Name)
		rs.replaced = append(rs.replaced, pod.Name)
	} else {
		rs.pods[pod.Name] = pod
	}
	if len(rs.replaced) == 0 {
		// Before the first eviction every pod is there: the watch's first
		// events list them one by one.
		return false
	}
	available := 0
	for _, p := range rs.pods {
		rep := reportOf(p)
		ready := rep != nil && rep.State == workersv1alpha1.AgentReady && rep.Ready == rep.Total
		if p.DeletionTimestamp.IsZero() && (ready || !strings.HasSuffix(p.Name, "-n")) {
			available++
		}
	}
	rs.maxUnavailable = max(rs.maxUnavailable, rs.want-available)
	return typ == watch.Deleted
}

func (rs *replicaSet) replace(old *corev1.Pod) {
	pod := newPod(rs.f.ns, old.Name+"-n")
	Expect(rs.f.c.Create(rs.f.ctx, pod)).To(Succeed(), "creating the replacement of pod %s", old.Name)
	markRunning(rs.f, pod)
}

// markRunning writes what the kubelet would of a started pod: Running and
// Ready, so that a PodDisruptionBudget counts it healthy.
func markRunning(f *fixture, pod *corev1.Pod) {
	GinkgoHelper()
	// The controller and the agents annotate the pod meanwhile.
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest := &corev1.Pod{}
		if err := f.c.Get(f.ctx, client.ObjectKeyFromObject(pod), latest); err != nil {
			return err
		}
		latest.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}}
		return f.c.Status().Update(f.ctx, latest)
	})).To(Succeed(), "marking pod %s running", pod.Name)
}

func (rs *replicaSet) most() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.maxUnavailable
}

func (rs *replicaSet) deleted() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.replaced...)
}

// createRunningPods creates the pods, running and ready.
func (f *fixture) createRunningPods(names ...string) {
	GinkgoHelper()
	for _, name := range names {
		pod := newPod(f.ns, name)
		Expect(f.c.Create(f.ctx, pod)).To(Succeed())
		markRunning(f, pod)
	}
}

// waitNewRevision waits for an update revision other than from.
func (f *fixture) waitNewRevision(from string) {
	GinkgoHelper()
	Eventually(func() string { return f.pool().Status.UpdateRevision }).ShouldNot(Equal(from), "a new revision")
}

// waitOutdated waits until n pods run a new revision with their gateway
// outdated.
func (f *fixture) waitOutdated(from string, n int32) {
	GinkgoHelper()
	f.waitNewRevision(from)
	Eventually(func() int32 { return f.pool().Status.OutdatedPods }).Should(Equal(n), "pods with an outdated gateway")
}

// waitReplaced waits until every pod the pool governs runs rev with every
// group current, want of them, and nothing is left to replace.
func (f *fixture) waitReplaced(want int) *workersv1alpha1.WorkerPool {
	GinkgoHelper()
	var p *workersv1alpha1.WorkerPool
	Eventually(func() error {
		p = f.pool()
		st := p.Status
		c := f.condition(workersv1alpha1.ConditionPodsOutdated)
		switch {
		case c == nil || c.Reason != workersv1alpha1.ReasonAllPodsCurrent:
			return fmt.Errorf("PodsOutdated: %+v", c)
		case int(st.UpdatedPods) != want || int(st.Pods) != want || st.OutdatedPods != 0 || len(st.Evictions) != 0:
			return fmt.Errorf("status %+v", st)
		}
		return nil
	}).Should(Succeed(), "every pod replaced")
	return p
}

var _ = Describe("pods that a revision cannot update in place", Label(suite.ControlPlane), func() {
	It("are held with podReplacement Hold, named in PodsOutdated", func() {
		f := newFixture()
		f.startManager(clock.RealClock{})
		f.createCode(map[string]string{"server.py": "print('v1')"})
		f.createRunningPods(podNames(3)...)
		f.createPool(gatewayPool(workersv1alpha1.PodReplacementHold, 1))
		v1 := f.waitComplete(3)
		Expect(f.condition(workersv1alpha1.ConditionPodsOutdated)).To(HaveField("Reason", workersv1alpha1.ReasonAllPodsCurrent))

		f.reportOutdatedGateway(v1)
		f.changeGateway("hello")
		f.waitOutdated(v1, 3)
		held := f.waitCondition(workersv1alpha1.ConditionPodsOutdated, metav1.ConditionTrue, workersv1alpha1.ReasonPodReplacementHeld)
		Expect(held.Message).To(containAll("web-0 (group gateway: SpecChanged)", "web-1 (group gateway: SpecChanged)",
			"web-2 (group gateway: SpecChanged)", "podReplacement to Evict", "kubectl softreload replace-pods web"), "PodsOutdated names the pods and why")
		p := f.pool()
		Expect(p.Status.UpdateRevision).NotTo(Equal(v1), "the change made a new revision")
		Expect(p.Status).To(SatisfyAll(HaveField("Pods", BeEquivalentTo(3)), HaveField("OutdatedPods", BeEquivalentTo(3)),
			HaveField("UpdatedPods", BeEquivalentTo(0)), HaveField("Evictions", BeEmpty())), "pods running an outdated gateway are not updated")
		Expect(f.condition(workersv1alpha1.ConditionProgressing)).To(SatisfyAll(HaveField("Reason", workersv1alpha1.ReasonRolloutComplete),
			HaveField("Message", ContainSubstring("3 keep a group that is not reloadable at an older spec"))))
		for _, name := range podNames(3) {
			Expect(f.pod(name).DeletionTimestamp).To(BeNil(), "pod %s is left running", name)
		}
		Expect(f.events(EventPodEvicted)).To(BeEmpty(), "no eviction")
	})

	It("are evicted with podReplacement Evict, never more than maxUnavailable at once", func() {
		f := newFixture()
		f.startManager(clock.RealClock{})
		f.createCode(map[string]string{"server.py": "print('v1')"})
		f.createRunningPods(podNames(5)...)
		f.createPool(gatewayPool(workersv1alpha1.PodReplacementEvict, 2))
		v1 := f.waitComplete(5)
		rs := f.startReplicaSet(5)

		f.reportOutdatedGateway(v1)
		f.changeGateway("hello")
		f.waitNewRevision(v1)
		p := f.waitReplaced(5)
		Expect(p.Status.UpdateRevision).NotTo(Equal(v1), "the change made a new revision")
		Expect(rs.deleted()).To(ConsistOf(podNames(5)), "every old pod evicted, once")
		Expect(rs.most()).To(SatisfyAll(BeNumerically(">=", 1), BeNumerically("<=", 2)), "the most pods unavailable at once: 1 to 2 (maxUnavailable)")
		for _, name := range podNames(5) {
			Expect(f.agents.sentTo(name+"-n")).To(Equal([]string{p.Status.UpdateRevision}), "the new pod %s-n was told the update revision alone", name)
		}
		Eventually(func() []string { return f.events(EventPodEvicted) }).Should(HaveLen(5), "one PodEvicted event per pod")
		Expect(f.condition(workersv1alpha1.ConditionProgressing)).To(HaveField("Reason", workersv1alpha1.ReasonRolloutComplete))
	})

	It("are evicted only as a PodDisruptionBudget allows", func() {
		f := newFixture()
		f.startManager(clock.RealClock{})
		f.createCode(map[string]string{"server.py": "print('v1')"})
		f.createRunningPods(podNames(3)...)
		f.createPool(gatewayPool(workersv1alpha1.PodReplacementEvict, 3))
		v1 := f.waitComplete(3)
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: f.ns},
			Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: ptr.To(intstr.FromInt32(2)),
				Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			},
		}
		Expect(f.c.Create(f.ctx, pdb)).To(Succeed())
		// The disruption controller's part: no disruption allowed yet.
		f.setDisruptionsAllowed(0)
		rs := f.startReplicaSet(3)

		f.reportOutdatedGateway(v1)
		f.changeGateway("hello")
		f.waitOutdated(v1, 3)
		blocked := f.waitCondition(workersv1alpha1.ConditionPodsOutdated, metav1.ConditionTrue, workersv1alpha1.ReasonEvictionBlocked)
		Expect(blocked.Message).To(containAll("web-0", "disruption budget"), "EvictionBlocked names the pod and the budget's answer")
		Expect(f.waitEvent(EventEvictionBlocked)).To(ContainElement(ContainSubstring("Cannot evict pod web-0")))
		Expect(rs.deleted()).To(BeEmpty(), "no pod deleted while the budget allows no disruption")

		// Then one disruption at a time: the API server takes it with each
		// eviction, and the disruption controller gives it back once the
		// new pod is ready.
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			for i := range 3 {
				f.setDisruptionsAllowed(1)
				Eventually(func() int { return len(rs.deleted()) }).Should(Equal(i+1), "eviction %d", i+1)
				name := rs.deleted()[i] + "-n"
				Eventually(func() bool { return f.runsUpdate(name) }).Should(BeTrue(), "pod %s ready", name)
			}
		}()
		f.waitReplaced(3)
		Eventually(done).Should(BeClosed())
		Expect(rs.most()).To(Equal(1), "the most pods unavailable at once: 1, as the budget allows (maxUnavailable is 3)")
		Expect(rs.deleted()).To(ConsistOf(podNames(3)))
	})

	It("are replaced on request, once", func() {
		f := newFixture()
		f.startManager(clock.RealClock{})
		f.createCode(map[string]string{"server.py": "print('v1')"})
		f.createRunningPods(podNames(3)...)
		f.createPool(gatewayPool(workersv1alpha1.PodReplacementHold, 1))
		f.waitComplete(3)
		rs := f.startReplicaSet(3)
		// A request replaces the pods created before its second.
		last := f.pod("web-2").CreationTimestamp.Time
		Eventually(func() bool { return time.Now().Truncate(time.Second).After(last) }).WithPolling(100*time.Millisecond).Should(BeTrue(),
			"the clock passes the second the pods were created in")

		f.updatePool(func(p *workersv1alpha1.WorkerPool) {
			if p.Annotations == nil {
				p.Annotations = map[string]string{}
			}
			p.Annotations[workersv1alpha1.ReplacePodsAtAnnotation] = time.Now().UTC().Format(time.RFC3339)
		})
		f.waitCondition(workersv1alpha1.ConditionPodsOutdated, metav1.ConditionTrue, workersv1alpha1.ReasonReplacingPods)
		f.waitReplaced(3)
		Expect(rs.deleted()).To(ConsistOf(podNames(3)), "every pod replaced, once")
		Expect(rs.most()).To(Equal(1), "one pod at a time (maxUnavailable 1)")
		// The request stays, and is done: another reconcile evicts nobody.
		f.updatePool(func(p *workersv1alpha1.WorkerPool) { p.Labels = map[string]string{"touched": "yes"} })
		f.waitReconciled()
		Consistently(func() []string { return rs.deleted() }).WithTimeout(2*time.Second).Should(HaveLen(3), "no pod replaced twice")
	})
})

// setDisruptionsAllowed writes the PodDisruptionBudget's status as the
// disruption controller would, with n disruptions allowed.
func (f *fixture) setDisruptionsAllowed(n int32) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pdb := &policyv1.PodDisruptionBudget{}
		if err := f.c.Get(f.ctx, client.ObjectKey{Namespace: f.ns, Name: "web"}, pdb); err != nil {
			return err
		}
		pdb.Status = policyv1.PodDisruptionBudgetStatus{
			ObservedGeneration: pdb.Generation, DisruptionsAllowed: n,
			CurrentHealthy: 2 + n, DesiredHealthy: 2, ExpectedPods: 3, DisruptedPods: pdb.Status.DisruptedPods,
		}
		return f.c.Status().Update(f.ctx, pdb)
	})).To(Succeed(), "writing the PodDisruptionBudget's status")
}

// runsUpdate says pod exists and runs the pool's update revision.
func (f *fixture) runsUpdate(name string) bool {
	pod := &corev1.Pod{}
	if err := f.c.Get(f.ctx, client.ObjectKey{Namespace: f.ns, Name: name}, pod); err != nil {
		return false
	}
	p := rollout.Pod{Name: pod.Name, Desired: pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation], Report: reportOf(pod)}
	return rollout.Runs(p, f.pool().Status.UpdateRevision)
}

var _ = DescribeTable("setPodsOutdatedCondition",
	func(st replaceState, status metav1.ConditionStatus, reason string, message []string, progressing bool) {
		st.target, st.maxUnavailable = "v2", 1
		var got workersv1alpha1.WorkerPoolStatus
		progress := setPodsOutdatedCondition(&got, &st, "web", 3, metav1.NewTime(rt0))
		Expect(got.Conditions).To(HaveLen(1))
		c := got.Conditions[0]
		Expect(c).To(SatisfyAll(HaveField("Type", workersv1alpha1.ConditionPodsOutdated), HaveField("Status", status),
			HaveField("Reason", reason), HaveField("ObservedGeneration", BeEquivalentTo(3))))
		Expect(c.Message).To(containAll(message...))
		if progressing {
			Expect(progress).To(Equal(c.Message), "Progressing says what PodsOutdated says")
		} else {
			Expect(progress).To(BeEmpty(), "Progressing says nothing of the replacement")
		}
		Expect(got.Evictions).To(Equal(st.plan.evictions), "status.evictions")

	},
	Entry("none outdated", replaceState{plan: replacePlan{outdated: map[string]string{}}},
		metav1.ConditionFalse, workersv1alpha1.ReasonAllPodsCurrent, []string{"revision v2"}, false),
	Entry("held", replaceState{plan: replacePlan{outdated: map[string]string{"b": "group gateway: SpecChanged", "a": "group gateway: Removed"}}},
		metav1.ConditionTrue, workersv1alpha1.ReasonPodReplacementHeld,
		[]string{"2 pods", "a (group gateway: Removed), b (group gateway: SpecChanged)", "podReplacement to Evict", "replace-pods web"}, false),
	Entry("more pods than a message names", replaceState{plan: replacePlan{outdated: map[string]string{
		"a": "x", "b": "x", "c": "x", "d": "x", "e": "x", "f": "x", "g": "x"}}},
		metav1.ConditionTrue, workersv1alpha1.ReasonPodReplacementHeld, []string{"7 pods", "e (x), and 2 more"}, false),
	Entry("replacing", replaceState{evicted: []string{"a"}, plan: replacePlan{active: true,
		outdated:  map[string]string{"a": "group gateway: SpecChanged", "b": "group gateway: SpecChanged"},
		evictions: []workersv1alpha1.PodEviction{evictedAt("z", -10), evictedAt("a", 0)},
		pending:   []workersv1alpha1.PodEviction{evictedAt("a", 0)}}},
		metav1.ConditionTrue, workersv1alpha1.ReasonReplacingPods,
		[]string{"Replacing 2 pods, at most 1 at a time", "evicted a, waiting for the new pods to report revision v2 ready", "to evict: b (group gateway: SpecChanged)"}, true),
	Entry("replacing while paused", replaceState{paused: true, plan: replacePlan{active: true, waiting: "the pool is paused",
		outdated: map[string]string{"a": "group gateway: SpecChanged"}}},
		metav1.ConditionTrue, workersv1alpha1.ReasonReplacingPods, []string{"to evict: a", "waiting: the pool is paused"}, false),
	Entry("blocked", replaceState{blocked: "evicting pod a is refused for now and retried: Cannot evict pod as it would violate the pod's disruption budget.",
		plan: replacePlan{active: true, outdated: map[string]string{"a": "group gateway: SpecChanged"}}},
		metav1.ConditionTrue, workersv1alpha1.ReasonEvictionBlocked, []string{"evicting pod a is refused", "disruption budget", "to evict: a"}, true),
)

var _ = DescribeTable("replaceRequestOf",
	func(value *string, want time.Time, wantErr string) {
		pool := newPool("ns")
		if value != nil {
			pool.Annotations = map[string]string{workersv1alpha1.ReplacePodsAtAnnotation: *value}
		}
		got, err := replaceRequestOf(pool)
		if wantErr != "" {
			Expect(err).To(MatchError(ContainSubstring(wantErr)))
			return
		}
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(BeTemporally("==", want))
	},
	Entry("no annotation", nil, time.Time{}, ""),
	Entry("an empty one", ptr.To(""), time.Time{}, ""),
	Entry("a time", ptr.To("2026-12-02T10:00:00Z"), rt0, ""),
	Entry("a time with an offset", ptr.To("2026-12-02T11:00:00+01:00"), rt0, ""),
	Entry("no time", ptr.To("now"), time.Time{}, `annotation softreload.dev/replacePodsAt="now" is not an RFC 3339 time`),
)
