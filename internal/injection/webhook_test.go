package injection_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/revision"
	"github.com/softreload/softreload/internal/testing/envtest"
)

const agentImage = "registry.example/softreload/agent:v0.1.0"

// TestWebhook serves the injector from its real webhook server to a real
// API server, with the webhook configuration that config/ ships.
func TestWebhook(t *testing.T) {
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	env, err := envtest.Start(envtest.Options{WebhookPaths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Client

	wio := env.Environment().WebhookInstallOptions
	server := webhook.NewServer(webhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir})
	injection.NewInjector(c, admission.NewDecoder(env.Scheme), injection.Options{AgentImage: agentImage}).Register(server)
	go func() { _ = server.Start(ctx) }()
	waitForServer(t, server)

	web := pool("web", workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}})
	must(t, c.Create(ctx, web))
	web.Status.CurrentRevision, web.Status.UpdateRevision = "rev-1", "rev-2"
	must(t, c.Status().Update(ctx, web))
	api := pool("api", workersv1alpha1.CodeSource{Image: &workersv1alpha1.ImageCodeSource{Reference: "registry.example/api-code:v7", Path: "/srv"}})
	api.Spec.Container = "app"
	must(t, c.Create(ctx, api))
	api.Status.CurrentRevision = "rev-9"
	must(t, c.Status().Update(ctx, api))
	good := &workersv1alpha1.ImageCodeSource{Reference: "registry.example/api-code:v7", Path: "/srv"}
	snap, err := revision.NewSnapshot(api, "rev-9", revision.Spec{Groups: api.Spec.Groups, Image: good}, revision.Code{})
	must(t, err)
	must(t, c.Create(ctx, snap))
	wrongContainer := pool("wrong", workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}})
	wrongContainer.Spec.Container = "nope"
	must(t, c.Create(ctx, wrongContainer))

	t.Run("a governed pod gets the agent and starts at the revision being rolled out", func(t *testing.T) {
		pod := newPod("web-1", "web", "app")
		must(t, c.Create(ctx, pod))
		if got := initNames(pod); !cmp.Equal(got, []string{injection.InstallContainer}) {
			t.Errorf("init containers %v, want the install container", got)
		}
		if pod.Spec.InitContainers[0].Image != agentImage {
			t.Errorf("install container image %q, want %q", pod.Spec.InitContainers[0].Image, agentImage)
		}
		app := pod.Spec.Containers[0]
		if diff := cmp.Diff([]string{injection.AgentPath, "pod"}, app.Command); diff != "" {
			t.Errorf("the container's command (-want +got):\n%s", diff)
		}
		env := envOf(app)
		want := map[string]string{
			"KEEP": "me", injection.EnvPodName: "fieldRef:metadata.name", injection.EnvPodNamespace: "fieldRef:metadata.namespace",
			injection.EnvPool: "web", injection.EnvCodeRoot: injection.CodeRoot,
		}
		if diff := cmp.Diff(want, env); diff != "" {
			t.Errorf("the container's environment (-want +got):\n%s", diff)
		}
		if got := pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation]; got != "rev-2" {
			t.Errorf("desired revision %q, want the update revision rev-2", got)
		}
		if len(pod.Spec.Containers) != 1 {
			t.Errorf("a ConfigMap pool added containers: %v", pod.Spec.Containers)
		}
	})

	t.Run("a code image pool gets a code container at its image, in the named container", func(t *testing.T) {
		pod := newPod("api-1", "api", "sidecar", "app")
		must(t, c.Create(ctx, pod))
		if pod.Spec.Containers[0].Command[0] == injection.AgentPath {
			t.Errorf("the agent replaced the sidecar's command; want it in container app")
		}
		if got := pod.Spec.Containers[1].Command; !cmp.Equal(got, []string{injection.AgentPath, "pod"}) {
			t.Errorf("container app's command %v, want the agent", got)
		}
		code := pod.Spec.Containers[len(pod.Spec.Containers)-1]
		if code.Name != injection.CodeContainer || code.Image != "registry.example/api-code:v7" {
			t.Fatalf("last container %s at %s, want %s at the code image", code.Name, code.Image, injection.CodeContainer)
		}
		wantCmd := []string{injection.AgentPath, "code-sync", "--root", injection.CodeRoot}
		if diff := cmp.Diff(wantCmd, code.Command); diff != "" {
			t.Errorf("code container command (-want +got):\n%s", diff)
		}
		// Its command cannot change while the pod runs, its image can: it
		// reads which image and path it delivers from the annotations.
		wantEnv := map[string]string{
			"SOFTRELOAD_CODE_IMAGE": "fieldRef:metadata.annotations['softreload.dev/code-image']",
			"SOFTRELOAD_CODE_PATH":  "fieldRef:metadata.annotations['softreload.dev/code-path']",
		}
		if diff := cmp.Diff(wantEnv, envOf(code)); diff != "" {
			t.Errorf("code container environment (-want +got):\n%s", diff)
		}
		wantAnn := map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "rev-9",
			workersv1alpha1.CodeImageAnnotation:       "registry.example/api-code:v7",
			workersv1alpha1.CodePathAnnotation:        "/srv",
		}
		if diff := cmp.Diff(wantAnn, pod.Annotations); diff != "" {
			t.Errorf("annotations (-want +got):\n%s", diff)
		}
	})

	t.Run("after a rollback, a new pod gets the image of its revision, not the failed one of the spec", func(t *testing.T) {
		must(t, c.Get(ctx, client.ObjectKeyFromObject(api), api))
		api.Spec.Code.Image = &workersv1alpha1.ImageCodeSource{Reference: "registry.example/api-code:broken", Path: "/code"}
		must(t, c.Update(ctx, api))
		api.Status.UpdateRevision = "rev-10"
		api.Status.Conditions = []metav1.Condition{{Type: workersv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue,
			Reason: workersv1alpha1.ReasonReloadFailed, Message: "rev-10 failed", LastTransitionTime: metav1.Now()}}
		must(t, c.Status().Update(ctx, api))

		pod := newPod("api-2", "api", "app")
		must(t, c.Create(ctx, pod))
		code := pod.Spec.Containers[len(pod.Spec.Containers)-1]
		if code.Image != good.Reference || pod.Annotations[workersv1alpha1.CodeImageAnnotation] != good.Reference ||
			pod.Annotations[workersv1alpha1.CodePathAnnotation] != good.Path || pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation] != "rev-9" {
			t.Errorf("new pod: code image %s, annotations %v; want rev-9 with %s at %s", code.Image, pod.Annotations, good.Reference, good.Path)
		}
	})

	t.Run("a pod without the label is left alone", func(t *testing.T) {
		pod := newPod("plain", "", "app")
		must(t, c.Create(ctx, pod))
		if len(pod.Spec.InitContainers) != 0 || !cmp.Equal(pod.Spec.Containers[0].Command, []string{"/bin/app"}) || len(pod.Annotations) != 0 {
			t.Errorf("an unlabelled pod was changed: init %v, command %v, annotations %v", initNames(pod), pod.Spec.Containers[0].Command, pod.Annotations)
		}
	})

	refusals := map[string]struct {
		pod  *corev1.Pod
		want string
	}{
		"a label that names no pool":            {newPod("ghost-1", "ghost", "app"), `label softreload.dev/pool=ghost names no WorkerPool in namespace default`},
		"a pool that names a missing container": {newPod("wrong-1", "wrong", "app"), `names container "nope" (spec.container), but the pod has only [app]`},
	}
	for name, tc := range refusals {
		t.Run("refuses "+name, func(t *testing.T) {
			err := c.Create(ctx, tc.pod)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal that says %q", err, tc.want)
			}
		})
	}
}

func TestInjectIsIdempotent(t *testing.T) {
	p := pool("api", workersv1alpha1.CodeSource{Image: &workersv1alpha1.ImageCodeSource{Reference: "registry.example/code:v1", Path: "/code"}})
	pod := newPod("api-1", "api", "app")
	changed, err := injection.Inject(pod, p, injection.Start{Image: p.Spec.Code.Image}, injection.Options{AgentImage: agentImage})
	if err != nil || !changed {
		t.Fatalf("first injection: changed=%v err=%v, want a change", changed, err)
	}
	once := pod.DeepCopy()
	changed, err = injection.Inject(pod, p, injection.Start{Image: p.Spec.Code.Image}, injection.Options{AgentImage: agentImage})
	if err != nil || changed {
		t.Fatalf("second injection: changed=%v err=%v, want no change", changed, err)
	}
	if diff := cmp.Diff(once, pod); diff != "" {
		t.Errorf("a second injection changed the pod (-once +twice):\n%s", diff)
	}
}

// A new pod starts at the revision being rolled out, unless that revision
// failed on a pod: then at the one every pod runs.
func TestNewPodsStartAtAWorkingRevision(t *testing.T) {
	degraded := func(reason string) []metav1.Condition {
		return []metav1.Condition{{Type: workersv1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: reason}}
	}
	tests := map[string]struct {
		status workersv1alpha1.WorkerPoolStatus
		want   string
	}{
		"rolling out":        {workersv1alpha1.WorkerPoolStatus{CurrentRevision: "r1", UpdateRevision: "r2"}, "r2"},
		"rolled out":         {workersv1alpha1.WorkerPoolStatus{CurrentRevision: "r2", UpdateRevision: "r2"}, "r2"},
		"the first revision": {workersv1alpha1.WorkerPoolStatus{UpdateRevision: "r1"}, "r1"},
		"failed, held (rollback: Manual)": {workersv1alpha1.WorkerPoolStatus{
			CurrentRevision: "r1", UpdateRevision: "r2", Conditions: degraded(workersv1alpha1.ReasonReloadFailed)}, "r1"},
		"the first revision failed": {workersv1alpha1.WorkerPoolStatus{
			UpdateRevision: "r1", Conditions: degraded(workersv1alpha1.ReasonReloadFailed)}, "r1"},
		"stalled, not failed": {workersv1alpha1.WorkerPoolStatus{
			CurrentRevision: "r1", UpdateRevision: "r2", Conditions: degraded(workersv1alpha1.ReasonProgressDeadlineExceeded)}, "r2"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := pool("web", workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}})
			p.Status = tc.status
			if got := injection.StartRevision(p); got != tc.want {
				t.Errorf("the pod starts at %q, want %q", got, tc.want)
			}
		})
	}
}

func TestImageCodeDir(t *testing.T) {
	dirs := map[string]bool{}
	for _, img := range [][2]string{{"registry.example/code:v1", "/code"}, {"registry.example/code:v2", "/code"}, {"registry.example/code:v1", "/srv"}} {
		d := injection.ImageCodeDir(img[0], img[1])
		if dirs[d] || !strings.HasPrefix(d, injection.CodeRoot+"/") {
			t.Errorf("%s at %s: directory %q is shared or not under %s", img[0], img[1], d, injection.CodeRoot)
		}
		dirs[d] = true
	}
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

func waitForServer(t *testing.T, server webhook.Server) {
	t.Helper()
	started := server.StartedChecker()
	deadline := time.Now().Add(time.Minute)
	for err := started(nil); err != nil; err = started(nil) {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook server never started: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
