//go:build realnode

package realnode

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/podrecord"
)

// replaceOnGatewayChange changes the gateway group, which no reload
// applies, with spec.strategy.podReplacement Evict and a
// PodDisruptionBudget that lets one pod go at a time: the controller evicts
// every pod through the Eviction API, the Deployment makes new ones, which
// start at the new revision, and never is more than one pod missing or not
// ready.
func (s *suite) replaceOnGatewayChange() {
	GinkgoHelper()
	old := map[string]types.UID{}
	for _, kp := range s.currentPods() {
		old[kp.Name] = kp.UID
	}
	n := len(old)
	Expect(n).To(BeNumerically(">=", 2), "pods to replace")

	By("a PodDisruptionBudget that lets one pod go at a time")
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: namespace},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptr.To(intstr.FromInt32(int32(n - 1))),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "hello"}},
		},
	}
	Expect(s.c.Create(s.ctx, pdb)).To(Succeed(), "creating the PodDisruptionBudget")
	DeferCleanup(func(ctx SpecContext) {
		Expect(client.IgnoreNotFound(s.c.Delete(ctx, pdb))).To(Succeed(), "deleting the PodDisruptionBudget")
	})
	Eventually(func(g Gomega) {
		got := &policyv1.PodDisruptionBudget{}
		g.Expect(s.c.Get(s.ctx, client.ObjectKeyFromObject(pdb), got)).To(Succeed())
		g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
		g.Expect(got.Status.DisruptionsAllowed).To(BeEquivalentTo(1))
	}).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed(), "the disruption controller allows one disruption")

	ready := s.watchReady(n)
	for _, p := range s.pods {
		s.leave(p) // its pod goes: its load and gateway connection end here
	}

	By("the gateway group changes, with podReplacement Evict")
	s.rec.ResetMax()
	rev, at := s.newRevision(func() { s.changeGatewayEvict() })
	Eventually(func(g Gomega) {
		wp := s.pool()
		desc := podrecord.DescribePool(wp) + s.rec.String()
		c := meta.FindStatusCondition(wp.Status.Conditions, v1alpha1.ConditionPodsOutdated)
		g.Expect(c).NotTo(BeNil(), desc)
		g.Expect(c.Reason).To(Equal(v1alpha1.ReasonAllPodsCurrent), desc)
		g.Expect(wp.Status.UpdateRevision).To(Equal(rev), desc)
		g.Expect(wp.Status.UpdatedPods).To(BeEquivalentTo(n), desc)
		pods := s.currentPods()
		g.Expect(pods).To(HaveLen(n), desc)
		for _, kp := range pods {
			g.Expect(old).NotTo(HaveKey(kp.Name), desc)
		}
	}).WithTimeout(2*rolloutTimeout).WithPolling(poll).Should(Succeed(), "every pod replaced")
	s.run("kubectl", "rollout", "status", "deployment/hello", "--timeout=5m")
	s.waitRolledOut("the new pods at "+rev, rev)
	s.joinPods() // the new pods: what measured reads
	s.measured("image", "gateway env changed, every pod evicted", rev, at)

	Expect(ready.least()).To(BeNumerically(">=", n-1), "the fewest pods ready at once, of %d, with a budget that lets one go", n)
	events := &eventsv1.EventList{}
	Expect(s.c.List(s.ctx, events, client.InNamespace(namespace))).To(Succeed())
	var evicted []string
	for _, e := range events.Items {
		if e.Reason == "PodEvicted" && e.Regarding.Name == pool {
			evicted = append(evicted, e.Related.Name)
		}
	}
	names := make([]string, 0, n)
	for name := range old {
		names = append(names, name)
	}
	Expect(evicted).To(ConsistOf(names), "a PodEvicted event for each old pod")
}

// changeGatewayEvict sets spec.strategy.podReplacement to Evict and adds a
// variable to the gateway group's env, in one JSON patch.
func (s *suite) changeGatewayEvict() {
	GinkgoHelper()
	wp := s.pool()
	i := slices.IndexFunc(wp.Spec.Groups, func(g v1alpha1.WorkerGroup) bool { return g.Name == "gateway" })
	Expect(i).To(BeNumerically(">=", 0), "the example's pool has no group gateway: %+v", wp.Spec.Groups)
	env := v1alpha1.EnvVar{Name: "GATEWAY_GENERATION", Value: "2"}
	ops := []map[string]any{{"op": "add", "path": "/spec/strategy/podReplacement", "value": v1alpha1.PodReplacementEvict}}
	if wp.Spec.Code.Image != nil {
		// The image step before leaves its broken image in the spec, rolled
		// back: the pods run the good one. The user who changes the gateway
		// puts that one back too, or the new revision would fail as well.
		pods := s.currentPods()
		Expect(pods).NotTo(BeEmpty(), "the example's pods")
		running := codeImage(&pods[0])
		Expect(running).NotTo(BeEmpty(), "the image of %s in pod %s", codeContainer, pods[0].Name)
		ops = append(ops, map[string]any{"op": "replace", "path": "/spec/code/image/reference", "value": running})
	}
	if len(wp.Spec.Groups[i].Env) == 0 {
		ops = append(ops, map[string]any{"op": "add", "path": fmt.Sprintf("/spec/groups/%d/env", i), "value": []v1alpha1.EnvVar{env}})
	} else {
		ops = append(ops, map[string]any{"op": "add", "path": fmt.Sprintf("/spec/groups/%d/env/-", i), "value": env})
	}
	body, err := json.Marshal(ops)
	Expect(err).NotTo(HaveOccurred())
	Expect(s.c.Patch(s.ctx, wp, client.RawPatch(types.JSONPatchType, body))).To(Succeed(), "patching the pool: %s", body)
}

// readyWatch counts the example's pods that the kubelet reports Ready
// and are not being deleted, and keeps the fewest seen once all n were.
type readyWatch struct {
	mu      sync.Mutex
	ready   map[string]bool
	n       int
	started bool
	fewest  int
}

// watchReady starts a readyWatch of n pods until the spec ends.
func (s *suite) watchReady(n int) *readyWatch {
	GinkgoHelper()
	w, err := s.kube.CoreV1().Pods(namespace).Watch(s.ctx, metav1.ListOptions{LabelSelector: podSelector})
	Expect(err).NotTo(HaveOccurred(), "watching the pods")
	DeferCleanup(w.Stop)
	rw := &readyWatch{ready: map[string]bool{}, n: n, fewest: n}
	go func() {
		for ev := range w.ResultChan() {
			if pod, ok := ev.Object.(*corev1.Pod); ok {
				rw.record(ev.Type, pod)
			}
		}
	}()
	Eventually(func() bool {
		rw.mu.Lock()
		defer rw.mu.Unlock()
		return rw.started
	}).WithTimeout(time.Minute).WithPolling(poll).Should(BeTrue(), "all %d pods seen ready", n)
	return rw
}

func (rw *readyWatch) record(typ watch.EventType, pod *corev1.Pod) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	isReady := typ != watch.Deleted && pod.DeletionTimestamp == nil && slices.ContainsFunc(pod.Status.Conditions,
		func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue })
	rw.ready[pod.Name] = isReady
	count := 0
	for _, r := range rw.ready {
		if r {
			count++
		}
	}
	if count >= rw.n {
		rw.started = true
	}
	if rw.started {
		rw.fewest = min(rw.fewest, count)
	}
}

func (rw *readyWatch) least() int {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.fewest
}
