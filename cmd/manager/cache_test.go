package main

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/controllers"
	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/suite"
)

// The manager's cache holds what softreload governs and nothing else, and
// what reads through the manager's client (the injection webhook, the
// controllers) still finds what it needs.
var _ = Describe("the manager's cache", Ordered, Label(suite.ControlPlane), func() {
	var (
		ctx context.Context
		mgr ctrl.Manager
		c   client.Client
	)
	const ns = "shop"

	BeforeAll(func() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)
		c = env.Client
		Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())

		// The manager as run() builds it, its webhook server on the
		// envtest's loopback address and certificate.
		opts := managerOptions(options{metricsAddr: "0", probeAddr: "0"})
		wio := env.Environment().WebhookInstallOptions
		opts.WebhookServer = webhook.NewServer(webhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir})
		opts.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
		var err error
		mgr, err = ctrl.NewManager(env.Config, opts)
		Expect(err).NotTo(HaveOccurred())
		Expect(controllers.NewWorkerPoolReconciler(mgr.GetClient(), mgr.GetEventRecorder("softreload"), clock.RealClock{}).SetupWithManager(mgr)).To(Succeed())
		Expect(controllers.NewAgentAccessReconciler(mgr.GetClient()).SetupWithManager(mgr)).To(Succeed())
		Expect(injection.Setup(mgr, injection.SetupOptions{
			Options:  injection.Options{AgentImage: "registry.example/agent:v1"},
			CertMode: injection.CertModeCertManager, CertDir: wio.LocalServingCertDir, Namespace: "softreload-system",
		})).To(Succeed())
		done := make(chan error, 1)
		go func() { done <- mgr.Start(ctx) }()
		DeferCleanup(func() {
			cancel()
			Eventually(done, time.Minute).Should(Receive(BeNil()))
		})
		// The API server calls the injection webhook at every pod
		// created: the manager starts its server in the background.
		started := mgr.GetWebhookServer().StartedChecker()
		Eventually(func() error { return started(nil) }).WithTimeout(time.Minute).Should(Succeed(), "the webhook server serves")
	})

	It("holds the governed pods and the snapshots, and never an unrelated pod or ConfigMap", func() {
		// The unrelated objects come first: once the cache shows what came
		// after them, it would show them too if it held them.
		otherPod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: ns, Labels: map[string]string{"app": "db"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "registry.example/db:v1"}}},
		}
		Expect(c.Create(ctx, otherPod)).To(Succeed())
		otherMap := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "db-settings", Namespace: ns},
			Data: map[string]string{"settings.json": `{"pool": 20}`}}
		Expect(c.Create(ctx, otherMap)).To(Succeed())

		Expect(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-code", Namespace: ns},
			Data: map[string]string{"server.py": "print('v1')"}})).To(Succeed())
		pool := &workersv1alpha1.WorkerPool{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
			Spec: workersv1alpha1.WorkerPoolSpec{
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Code:     workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}},
				Groups:   []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"python3", "server.py"}, Count: 2}},
			},
		}
		Expect(c.Create(ctx, pool)).To(Succeed())
		var rev string
		Eventually(func(g Gomega) {
			g.Expect(c.Get(ctx, client.ObjectKeyFromObject(pool), pool)).To(Succeed())
			rev = pool.Status.UpdateRevision
			g.Expect(rev).NotTo(BeEmpty(), "the pool's first revision")
		}, time.Minute, 50*time.Millisecond).Should(Succeed())

		By("the webhook, reading the pool through the manager's client, starts a new pod at the pool's revision")
		web := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: ns, Labels: map[string]string{"app": "web", workersv1alpha1.PoolLabel: "web"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}}},
		}
		Expect(c.Create(ctx, web)).To(Succeed())
		Expect(web.Annotations).To(HaveKeyWithValue(workersv1alpha1.DesiredRevisionAnnotation, rev))

		cached := mgr.GetCache()
		Eventually(func(g Gomega) {
			g.Expect(cached.Get(ctx, client.ObjectKeyFromObject(web), &corev1.Pod{})).To(Succeed())
		}, time.Minute, 50*time.Millisecond).Should(Succeed(), "the governed pod reaches the cache")
		pods := &corev1.PodList{}
		Expect(cached.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
		Expect(podNames(pods.Items)).To(ConsistOf("web-0"))
		Expect(apierrors.IsNotFound(cached.Get(ctx, client.ObjectKeyFromObject(otherPod), &corev1.Pod{}))).To(BeTrue(),
			"the unrelated pod is not in the cache")

		By("the ConfigMaps in the cache are the snapshots alone, without their files, and a snapshot reads as one")
		maps := &corev1.ConfigMapList{}
		Expect(cached.List(ctx, maps, client.InNamespace(ns))).To(Succeed())
		Expect(maps.Items).To(HaveLen(1))
		snapshot := maps.Items[0]
		Expect(snapshot.Name).To(Equal(poolrevision.SnapshotName("web", rev)))
		Expect(snapshot.Data).To(BeEmpty())
		spec, err := poolrevision.SpecFrom(&snapshot)
		Expect(err).NotTo(HaveOccurred())
		Expect(spec.Groups).To(HaveLen(1))
		fromServer := &corev1.ConfigMap{}
		Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: snapshot.Name}, fromServer)).To(Succeed())
		Expect(fromServer.Data).To(HaveKeyWithValue("server.py", "print('v1')"), "the snapshot itself keeps the files")
		for _, name := range []string{"db-settings", "web-code"} {
			Expect(apierrors.IsNotFound(cached.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &corev1.ConfigMap{}))).To(BeTrue(),
				"ConfigMap %s is not in the cache", name)
		}

		By("the pool governs the pod the webhook admitted")
		Eventually(func(g Gomega) {
			g.Expect(c.Get(ctx, client.ObjectKeyFromObject(pool), pool)).To(Succeed())
			g.Expect(pool.Status.Pods).To(BeEquivalentTo(1))
		}, time.Minute, 50*time.Millisecond).Should(Succeed())
	})
})

func podNames(pods []corev1.Pod) []string {
	out := make([]string, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}
