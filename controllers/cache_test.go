package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/suite"
)

// cachedMeta is the metadata of an object as the API server sends it; bare
// is the same without its managed fields.
var (
	cachedMeta = metav1.ObjectMeta{
		Name: "web-0", Namespace: "shop", UID: "u1", ResourceVersion: "42",
		Labels:        map[string]string{workersv1alpha1.PoolLabel: "web"},
		Annotations:   map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "abc"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}
	bareMeta = func() metav1.ObjectMeta { m := *cachedMeta.DeepCopy(); m.ManagedFields = nil; return m }()
	deleted  = metav1.Now()
)

var _ = DescribeTable("the cache's transforms keep what the controllers and the webhook read, and drop the rest",
	func(transform toolscache.TransformFunc, in, want any) {
		got, err := transform(in)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(BeComparableTo(want), "transformed")
	},
	Entry("a pod keeps its metadata, service account and containers' names and images", trimPod,
		&corev1.Pod{ObjectMeta: cachedMeta, Spec: corev1.PodSpec{
			ServiceAccountName: "web-sa",
			Containers: []corev1.Container{{Name: "app", Image: "app:v1", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}},
				{Name: "softreload-code", Image: "code:v1", Args: []string{"copy"}}},
			Volumes: []corev1.Volume{{Name: "data"}},
		}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}},
		&corev1.Pod{ObjectMeta: bareMeta, Spec: corev1.PodSpec{
			ServiceAccountName: "web-sa",
			Containers:         []corev1.Container{{Name: "app", Image: "app:v1"}, {Name: "softreload-code", Image: "code:v1"}},
		}}),
	Entry("a snapshot keeps its metadata, not its files", trimSnapshot,
		&corev1.ConfigMap{ObjectMeta: cachedMeta, Immutable: ptr.To(true),
			Data: map[string]string{"server.py": "print()"}, BinaryData: map[string][]byte{"a.bin": {1}}},
		&corev1.ConfigMap{ObjectMeta: bareMeta, Immutable: ptr.To(true)}),
	Entry("a code ConfigMap's metadata keeps what tells its versions apart", keepIdentity,
		&metav1.PartialObjectMetadata{ObjectMeta: func() metav1.ObjectMeta {
			m := *cachedMeta.DeepCopy()
			m.DeletionTimestamp = &deleted
			return m
		}()},
		&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Name: "web-0", Namespace: "shop", UID: "u1", ResourceVersion: "42", DeletionTimestamp: &deleted}}),
	Entry("a tombstone passes", trimPod,
		toolscache.DeletedFinalStateUnknown{Key: "shop/web-0"},
		toolscache.DeletedFinalStateUnknown{Key: "shop/web-0"}),
)

// With the manager's own cache options (one informer for the pods of every
// namespace), a reconcile reads its pool's pods from that informer's pool
// index, without the copy of every pod a List makes, and finds what a List
// finds: the pods labelled for the pool that its selector matches.
var _ = It("reads a pool's pods from the pod informer's index, as a List would", Label(suite.ControlPlane), func() {
	f := newFixture()
	mgr, err := ctrl.NewManager(poolEnv.Config, ctrl.Options{
		Scheme: poolEnv.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: CacheOptions(),
	})
	Expect(err).NotTo(HaveOccurred(), "creating a manager")
	Expect(indexPods(mgr)).To(Succeed(), "indexing the pods")
	indexed, err := newPoolPods(mgr, mgr.GetClient())
	Expect(err).NotTo(HaveOccurred(), "reading the pod informer")
	Expect(indexed.index).NotTo(BeNil(), "the pod informer's index, with CacheOptions")
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	DeferCleanup(func() { cancel(); Expect(<-done).To(Succeed(), "manager") })

	pod := func(name string, lbls map[string]string) *corev1.Pod {
		p := newPod(f.ns, name)
		p.Labels = lbls
		return p
	}
	// The pods the pool does not get first: once the cache shows web-1,
	// it shows them too.
	for _, p := range []*corev1.Pod{
		pod("web-other-app", map[string]string{"app": "other", workersv1alpha1.PoolLabel: poolName}),
		pod("api-0", map[string]string{"app": "web", workersv1alpha1.PoolLabel: "api"}),
		pod("bare-0", map[string]string{"app": "web"}),
		pod("web-0", map[string]string{"app": "web", workersv1alpha1.PoolLabel: poolName}),
		pod("web-1", map[string]string{"app": "web", workersv1alpha1.PoolLabel: poolName}),
	} {
		Expect(f.c.Create(f.ctx, p)).To(Succeed(), "creating pod %s", p.Name)
	}
	selector := labels.SelectorFromSet(labels.Set{"app": "web"})
	names := func(p poolPods) func() ([]string, error) {
		return func() ([]string, error) {
			pods, err := p.get(f.ctx, f.ns, poolName, selector)
			out := make([]string, 0, len(pods))
			for _, p := range pods {
				out = append(out, p.Name)
			}
			return out, err
		}
	}
	Eventually(names(indexed)).WithTimeout(timeout).Should(ConsistOf("web-0", "web-1"), "the pods read from the index")
	Expect(names(poolPods{client: mgr.GetClient()})()).To(ConsistOf("web-0", "web-1"), "the pods a List finds")
})

var _ = It("sets an expected revision on a copy of the pod, never on the cache's", func() {
	m := newMemory()
	pool := types.NamespacedName{Namespace: "shop", Name: "web"}
	cached := &corev1.Pod{ObjectMeta: *bareMeta.DeepCopy()} // resourceVersion 42, told abc
	m.expect(pool, cached.UID, "43", "def")
	pods := []*corev1.Pod{cached}
	m.applyExpectations(pool, pods)
	Expect(pods[0].Annotations).To(HaveKeyWithValue(workersv1alpha1.DesiredRevisionAnnotation, "def"), "the pod as planned")
	Expect(cached.Annotations).To(HaveKeyWithValue(workersv1alpha1.DesiredRevisionAnnotation, "abc"), "the cache's pod")

	shown := cached.DeepCopy()
	shown.ResourceVersion, shown.Annotations[workersv1alpha1.DesiredRevisionAnnotation] = "43", "def"
	pods = []*corev1.Pod{shown}
	m.applyExpectations(pool, pods)
	Expect(pods[0]).To(BeIdenticalTo(shown), "a pod whose write the cache shows is planned as cached")
})
