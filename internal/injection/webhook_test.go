package injection_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/suite"
)

const agentImage = "registry.example/softreload/agent:v0.1.0"

// The injector served from its real webhook server to a real API server,
// with the webhook configuration that config/ ships.
var _ = Describe("The injection webhook", Ordered, Label(suite.ControlPlane), func() {
	var (
		ctx  context.Context
		c    client.Client
		api  *workersv1alpha1.WorkerPool
		good = &workersv1alpha1.ImageCodeSource{Reference: "registry.example/api-code:v7", Path: "/srv"}
	)

	BeforeAll(func() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)
		c = env.Client

		wio := env.Environment().WebhookInstallOptions
		server := webhook.NewServer(webhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir})
		injection.NewInjector(c, admission.NewDecoder(env.Scheme), injection.Options{AgentImage: agentImage}).Register(server)
		go func() { _ = server.Start(ctx) }()
		started := server.StartedChecker()
		Eventually(func() error { return started(nil) }).WithTimeout(time.Minute).WithPolling(50*time.Millisecond).
			Should(Succeed(), "the webhook server never started")

		web := pool("web", workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}})
		Expect(c.Create(ctx, web)).To(Succeed())
		web.Status.CurrentRevision, web.Status.UpdateRevision = "rev-1", "rev-2"
		Expect(c.Status().Update(ctx, web)).To(Succeed())
		api = pool("api", workersv1alpha1.CodeSource{Image: &workersv1alpha1.ImageCodeSource{Reference: "registry.example/api-code:v7", Path: "/srv"}})
		api.Spec.Container = "app"
		Expect(c.Create(ctx, api)).To(Succeed())
		api.Status.CurrentRevision = "rev-9"
		Expect(c.Status().Update(ctx, api)).To(Succeed())
		snap, err := poolrevision.NewSnapshot(api, "rev-9", poolrevision.Spec{Groups: api.Spec.Groups, Image: good}, poolrevision.Code{})
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Create(ctx, snap)).To(Succeed())
		wrongContainer := pool("wrong", workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}})
		wrongContainer.Spec.Container = "nope"
		Expect(c.Create(ctx, wrongContainer)).To(Succeed())
	})

	It("gives a governed pod the agent, starting at the revision being rolled out", func() {
		pod := newPod("web-1", "web", "app")
		Expect(c.Create(ctx, pod)).To(Succeed())
		Expect(initNames(pod)).To(Equal([]string{injection.InstallContainer}), "init containers")
		Expect(pod.Spec.InitContainers[0].Image).To(Equal(agentImage), "install container image")
		app := pod.Spec.Containers[0]
		Expect(app.Command).To(Equal([]string{injection.AgentPath, "pod"}), "the container's command")
		Expect(envOf(app)).To(Equal(map[string]string{
			"KEEP": "me", injection.EnvPodName: "fieldRef:metadata.name", injection.EnvPodNamespace: "fieldRef:metadata.namespace",
			injection.EnvPool: "web", injection.EnvCodeRoot: injection.CodeRoot,
		}), "the container's environment")
		Expect(pod.Annotations).To(HaveKeyWithValue(workersv1alpha1.DesiredRevisionAnnotation, "rev-2"), "desired revision: the update revision")
		Expect(pod.Spec.Containers).To(HaveLen(1), "a ConfigMap pool added containers")
	})

	It("gives a code image pool's pod a code container at its image, and the agent in the named container", func() {
		pod := newPod("api-1", "api", "sidecar", "app")
		Expect(c.Create(ctx, pod)).To(Succeed())
		Expect(pod.Spec.Containers[0].Command[0]).NotTo(Equal(injection.AgentPath), "the agent replaced the sidecar's command; want it in container app")
		Expect(pod.Spec.Containers[1].Command).To(Equal([]string{injection.AgentPath, "pod"}), "container app's command")
		code := pod.Spec.Containers[len(pod.Spec.Containers)-1]
		Expect(code.Name).To(Equal(injection.CodeContainer), "the last container")
		Expect(code.Image).To(Equal("registry.example/api-code:v7"), "the code container's image")
		Expect(code.Command).To(Equal([]string{injection.AgentPath, "code-sync", "--root", injection.CodeRoot}), "code container command")
		// Its command cannot change while the pod runs, its image can: it
		// reads which image and path it delivers from the annotations.
		Expect(envOf(code)).To(Equal(map[string]string{
			"SOFTRELOAD_CODE_IMAGE": "fieldRef:metadata.annotations['softreload.dev/code-image']",
			"SOFTRELOAD_CODE_PATH":  "fieldRef:metadata.annotations['softreload.dev/code-path']",
		}), "code container environment")
		Expect(pod.Annotations).To(Equal(map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "rev-9",
			workersv1alpha1.CodeImageAnnotation:       "registry.example/api-code:v7",
			workersv1alpha1.CodePathAnnotation:        "/srv",
		}), "annotations")
	})

	It("gives a new pod after a rollback the image of its revision, not the failed one of the spec", func() {
		Expect(c.Get(ctx, client.ObjectKeyFromObject(api), api)).To(Succeed())
		api.Spec.Code.Image = &workersv1alpha1.ImageCodeSource{Reference: "registry.example/api-code:broken", Path: "/code"}
		Expect(c.Update(ctx, api)).To(Succeed())
		api.Status.UpdateRevision = "rev-10"
		api.Status.Conditions = []metav1.Condition{{Type: workersv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue,
			Reason: workersv1alpha1.ReasonReloadFailed, Message: "rev-10 failed", LastTransitionTime: metav1.Now()}}
		Expect(c.Status().Update(ctx, api)).To(Succeed())

		pod := newPod("api-2", "api", "app")
		Expect(c.Create(ctx, pod)).To(Succeed())
		code := pod.Spec.Containers[len(pod.Spec.Containers)-1]
		Expect(code.Image).To(Equal(good.Reference), "the new pod's code image")
		Expect(pod.Annotations).To(SatisfyAll(
			HaveKeyWithValue(workersv1alpha1.CodeImageAnnotation, good.Reference),
			HaveKeyWithValue(workersv1alpha1.CodePathAnnotation, good.Path),
			HaveKeyWithValue(workersv1alpha1.DesiredRevisionAnnotation, "rev-9"),
		), "the new pod's annotations")
	})

	It("leaves a pod without the label alone", func() {
		pod := newPod("plain", "", "app")
		Expect(c.Create(ctx, pod)).To(Succeed())
		Expect(pod.Spec.InitContainers).To(BeEmpty(), "an unlabelled pod got init containers")
		Expect(pod.Spec.Containers[0].Command).To(Equal([]string{"/bin/app"}), "an unlabelled pod's command changed")
		Expect(pod.Annotations).To(BeEmpty(), "an unlabelled pod got annotations")
	})

	DescribeTable("refuses a pod, saying why",
		func(pod *corev1.Pod, want string) {
			Expect(c.Create(ctx, pod)).To(MatchError(ContainSubstring(want)))
		},
		Entry("a label that names no pool", newPod("ghost-1", "ghost", "app"),
			`label softreload.dev/pool=ghost names no WorkerPool in namespace default`),
		Entry("a pool that names a missing container", newPod("wrong-1", "wrong", "app"),
			`names container "nope" (spec.container), but the pod has only [app]`),
	)
})

var _ = Describe("Inject", func() {
	It("is idempotent", func() {
		p := pool("api", workersv1alpha1.CodeSource{Image: &workersv1alpha1.ImageCodeSource{Reference: "registry.example/code:v1", Path: "/code"}})
		pod := newPod("api-1", "api", "app")
		changed, err := injection.Inject(pod, p, injection.Start{Image: p.Spec.Code.Image}, injection.Options{AgentImage: agentImage})
		Expect(err).NotTo(HaveOccurred(), "first injection")
		Expect(changed).To(BeTrue(), "the first injection changed nothing")
		once := pod.DeepCopy()
		changed, err = injection.Inject(pod, p, injection.Start{Image: p.Spec.Code.Image}, injection.Options{AgentImage: agentImage})
		Expect(err).NotTo(HaveOccurred(), "second injection")
		Expect(changed).To(BeFalse(), "the second injection says it changed the pod")
		Expect(pod).To(BeComparableTo(once), "a second injection changed the pod")
	})
})

// A new pod starts at the revision being rolled out, unless that revision
// failed on a pod: then at the one every pod runs.
var _ = DescribeTable("The revision a new pod starts at",
	func(status workersv1alpha1.WorkerPoolStatus, want string) {
		p := pool("web", workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}})
		p.Status = status
		Expect(injection.StartRevision(p)).To(Equal(want))
	},
	Entry("rolling out", workersv1alpha1.WorkerPoolStatus{CurrentRevision: "r1", UpdateRevision: "r2"}, "r2"),
	Entry("rolled out", workersv1alpha1.WorkerPoolStatus{CurrentRevision: "r2", UpdateRevision: "r2"}, "r2"),
	Entry("the first revision", workersv1alpha1.WorkerPoolStatus{UpdateRevision: "r1"}, "r1"),
	Entry("failed, held (rollback: Manual)", workersv1alpha1.WorkerPoolStatus{
		CurrentRevision: "r1", UpdateRevision: "r2", Conditions: degraded(workersv1alpha1.ReasonReloadFailed)}, "r1"),
	Entry("the first revision failed", workersv1alpha1.WorkerPoolStatus{
		UpdateRevision: "r1", Conditions: degraded(workersv1alpha1.ReasonReloadFailed)}, "r1"),
	Entry("stalled, not failed", workersv1alpha1.WorkerPoolStatus{
		CurrentRevision: "r1", UpdateRevision: "r2", Conditions: degraded(workersv1alpha1.ReasonProgressDeadlineExceeded)}, "r2"),
)

var _ = Describe("ImageCodeDir", func() {
	It("gives every image and path a directory of its own under the code root", func() {
		dirs := map[string]bool{}
		for _, img := range [][2]string{{"registry.example/code:v1", "/code"}, {"registry.example/code:v2", "/code"}, {"registry.example/code:v1", "/srv"}} {
			d := injection.ImageCodeDir(img[0], img[1])
			Expect(dirs).NotTo(HaveKey(d), "%s at %s: directory %q is shared", img[0], img[1], d)
			Expect(d).To(HavePrefix(injection.CodeRoot+"/"), "%s at %s", img[0], img[1])
			dirs[d] = true
		}
	})
})

// degraded is a Degraded condition for reason.
func degraded(reason string) []metav1.Condition {
	return []metav1.Condition{{Type: workersv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: reason}}
}

// envOf is a container's environment, a variable from the downward API as
// "fieldRef:" and its field.
func envOf(c corev1.Container) map[string]string {
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = "fieldRef:" + e.ValueFrom.FieldRef.FieldPath
		default:
			env[e.Name] = e.Value
		}
	}
	return env
}

func pool(name string, code workersv1alpha1.CodeSource) *workersv1alpha1.WorkerPool {
	return &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: workersv1alpha1.WorkerPoolSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{workersv1alpha1.PoolLabel: name}},
			Code:     code,
			Groups:   []workersv1alpha1.WorkerGroup{{Name: "worker", Command: []string{"./worker"}}},
		},
	}
}

func newPod(name, poolName string, containers ...string) *corev1.Pod {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if poolName != "" {
		pod.Labels = map[string]string{workersv1alpha1.PoolLabel: poolName}
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{
			Name: c, Image: "registry.example/" + c + ":v1", Command: []string{"/bin/" + c},
			Env: []corev1.EnvVar{{Name: "KEEP", Value: "me"}},
		})
	}
	return pod
}

func initNames(pod *corev1.Pod) []string {
	var names []string
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name)
	}
	return names
}
