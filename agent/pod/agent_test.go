package pod_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/softreload/softreload/agent/pod"
	"github.com/softreload/softreload/agent/testworker"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/revision"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/loopback"
)

// fakeEngine stands in for the supervisor: it records what the agent asks
// and reports what the test tells it to.
type fakeEngine struct {
	reloads chan pod.Revision
	status  chan v1alpha1.AgentStatus
}

func (e *fakeEngine) Run(ctx context.Context) error  { <-ctx.Done(); return nil }
func (e *fakeEngine) RequestReload(rev pod.Revision) { e.reloads <- rev }
func (e *fakeEngine) Subscribe() (<-chan v1alpha1.AgentStatus, func()) {
	return e.status, func() {}
}

// rig is an agent on a real API server, with a fake engine.
type rig struct {
	t      *testing.T
	ctx    context.Context
	kube   kubernetes.Interface
	ns     string
	root   string
	starts chan pod.Revision // the revision each engine is built with
	engine *fakeEngine
	log    *testworker.Output // the agent's log
}

var env *envtest.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = envtest.Start(envtest.Options{}); err != nil {
		panic(err)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

func newRig(t *testing.T, name string, annotations map[string]string, containers ...string) *rig {
	t.Helper()
	if len(containers) == 0 {
		containers = []string{"app"}
	}
	var specs []corev1.Container
	for _, c := range containers {
		specs = append(specs, corev1.Container{Name: c, Image: c})
	}
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(env.Config)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-"}}
	ns, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	must(t, err)
	_, err = kube.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: specs},
	}, metav1.CreateOptions{})
	must(t, err)
	return &rig{
		t: t, ctx: ctx, kube: kube, ns: ns.Name, root: t.TempDir(),
		starts: make(chan pod.Revision, 10),
		engine: &fakeEngine{reloads: make(chan pod.Revision, 10), status: make(chan v1alpha1.AgentStatus, 10)},
		log:    &testworker.Output{},
	}
}

// start runs the agent of pod name until the test ends, or until the
// returned function stops it.
func (r *rig) start(name string) (stop func()) {
	r.t.Helper()
	return r.startWith(newClient(r.t, env.Config), name)
}

// startWith runs the agent of pod name with client until the test ends, or
// until the returned function stops it.
func (r *rig) startWith(client pod.Client, name string) (stop func()) {
	r.t.Helper()
	a, err := pod.New(pod.Options{
		Client: client, Namespace: r.ns, PodName: name, Pool: "web", CodeRoot: r.root,
		ImageTimeout: 20 * time.Second,
		Logger:       slog.New(slog.NewTextHandler(r.log, nil)),
		NewEngine: func(first pod.Revision) (pod.Engine, error) {
			r.starts <- first
			return r.engine, nil
		},
	})
	must(r.t, err)
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				r.t.Errorf("agent: %v", err)
			}
		})
	}
	r.t.Cleanup(stop)
	return stop
}

// newClient is the agent's own client of the API server at cfg.
func newClient(t *testing.T, cfg *rest.Config) pod.Client {
	t.Helper()
	c, err := pod.NewClient(cfg)
	must(t, err)
	return c
}

// snapshot creates revision rev's snapshot as the controller does.
func (r *rig) snapshot(rev string, spec revision.Spec, files map[string]string) {
	r.t.Helper()
	pool := &v1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: r.ns, UID: "pool-uid"}}
	cm, err := revision.NewSnapshot(pool, rev, spec, revision.Code{Data: files})
	must(r.t, err)
	_, err = r.kube.CoreV1().ConfigMaps(r.ns).Create(r.ctx, cm, metav1.CreateOptions{})
	must(r.t, err)
}

// annotate merges annotations into the pod, as the controller does.
func (r *rig) annotate(name string, annotations map[string]string) {
	r.t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	must(r.t, err)
	_, err = r.kube.CoreV1().Pods(r.ns).Patch(r.ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	must(r.t, err)
}

// waitReport waits until the pod's status annotation is want.
func (r *rig) waitReport(name string, want v1alpha1.AgentStatus) {
	r.t.Helper()
	r.waitReportThat(name, fmt.Sprintf("%+v", want), func(got v1alpha1.AgentStatus) bool { return got == want })
}

// waitReportThat waits until the pod's status annotation is one that ok
// takes, described by what.
func (r *rig) waitReportThat(name, what string, ok func(v1alpha1.AgentStatus) bool) {
	r.t.Helper()
	var got *v1alpha1.AgentStatus
	err := wait.PollUntilContextTimeout(r.ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := r.kube.CoreV1().Pods(r.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got, _ = v1alpha1.ParseAgentStatus(p.Annotations[v1alpha1.StatusAnnotation])
		return got != nil && ok(*got), nil
	})
	if err != nil {
		r.t.Fatalf("the pod reports %+v, want %s", got, what)
	}
}

// waitLog waits until the agent has logged line.
func (r *rig) waitLog(line string) {
	r.t.Helper()
	err := wait.PollUntilContextTimeout(r.ctx, 20*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		return strings.Contains(r.log.String(), line), nil
	})
	if err != nil {
		r.t.Fatalf("the agent never logged %q:\n%s", line, r.log.String())
	}
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}

// nothing checks that ch stays empty for a while.
func nothing[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %s: %+v", what, v)
	case <-time.After(time.Second):
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var groups = []v1alpha1.WorkerGroup{{Name: "web", Command: []string{"python3", "app.py"}}}

// The agent starts the workers at the revision its pod asks for, with the
// snapshot's files and groups; reloads once per new revision, even when the
// snapshot comes after the annotation; reports what the engine says; and
// answers a rollback after a failure by asking the engine for the running
// revision.
func TestAgentFollowsItsPod(t *testing.T) {
	r := newRig(t, "web-0", nil)
	r.snapshot("r1", revision.Spec{Groups: groups}, map[string]string{"app.py": "print('v1')"})
	r.start("web-0")
	r.annotate("web-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})

	first := receive(t, r.starts, "engine start")
	if first.Name != "r1" || len(first.Spec.Groups) != 1 || first.Spec.Groups[0].Name != "web" {
		t.Fatalf("the engine starts with %+v, want revision r1 and its groups", first)
	}
	if got := readFile(t, filepath.Join(first.Dir, "app.py")); got != "print('v1')" {
		t.Errorf("revision r1's app.py holds %q", got)
	}
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}
	r.waitReport("web-0", v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1})

	// The controller may set the annotation before the agent can read the
	// snapshot (its Role is updated a moment later).
	r.annotate("web-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
	r.waitLog("Waiting for the revision's snapshot")
	r.waitReportThat("web-0", "r2 Reloading, waiting for its snapshot, r1 running", func(st v1alpha1.AgentStatus) bool {
		return st.Revision == "r2" && st.State == v1alpha1.AgentReloading && st.Running == "r1" &&
			strings.Contains(st.Message, "waiting for snapshot web-r2")
	})
	r.snapshot("r2", revision.Spec{Groups: groups}, map[string]string{"app.py": "print('v2')"})
	second := receive(t, r.engine.reloads, "reload to r2")
	if second.Name != "r2" || readFile(t, filepath.Join(second.Dir, "app.py")) != "print('v2')" {
		t.Fatalf("reload to %+v, want r2 with its files", second)
	}
	if first.Dir == second.Dir || readFile(t, filepath.Join(first.Dir, "app.py")) != "print('v1')" {
		t.Error("revision r2 was written over revision r1's directory")
	}

	// Any other change of the pod is not a reason to reload.
	r.annotate("web-0", map[string]string{"example.com/unrelated": "1"})
	nothing(t, r.engine.reloads, "reload")

	// A failure is reported as the engine says; the rollback (desired back
	// to r1) is passed to the engine, which replaces nothing and reports
	// Ready.
	failed := v1alpha1.AgentStatus{Revision: "r2", State: v1alpha1.AgentFailed, Running: "r1", Ready: 1, Total: 1, Message: "worker exited"}
	r.engine.status <- failed
	r.waitReport("web-0", failed)
	r.annotate("web-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
	if back := receive(t, r.engine.reloads, "rollback to r1"); back.Name != "r1" {
		t.Fatalf("rollback to %q, want r1", back.Name)
	}
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}
	r.waitReport("web-0", v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1})

	// r2 failed here: asked again, it is not tried again.
	r.annotate("web-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
	nothing(t, r.engine.reloads, "reload to a revision that failed here")
	r.waitReport("web-0", v1alpha1.AgentStatus{Revision: "r2", State: v1alpha1.AgentFailed, Running: "r1", Ready: 1, Total: 1, Message: "worker exited"})
}

// A restarted agent whose pod last reported a failed revision starts the
// workers at the revision it went back to, not at the failed one, and keeps
// reporting the failure.
func TestAgentRemembersAFailureAcrossRestarts(t *testing.T) {
	failed := v1alpha1.AgentStatus{Revision: "r2", State: v1alpha1.AgentFailed, Running: "r1", Ready: 2, Total: 2, Message: "not ready in time"}
	raw, err := json.Marshal(failed)
	must(t, err)
	r := newRig(t, "web-1", map[string]string{
		v1alpha1.DesiredRevisionAnnotation: "r2",
		v1alpha1.StatusAnnotation:          string(raw),
	})
	r.snapshot("r1", revision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
	r.snapshot("r2", revision.Spec{Groups: groups}, map[string]string{"app.py": "v2"})
	r.start("web-1")

	if first := receive(t, r.starts, "engine start"); first.Name != "r1" {
		t.Fatalf("the restarted agent runs %q, want r1 (r2 failed here)", first.Name)
	}
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 2, Total: 2}
	r.waitReport("web-1", v1alpha1.AgentStatus{Revision: "r2", State: v1alpha1.AgentFailed, Running: "r1", Ready: 2, Total: 2, Message: "not ready in time"})
	nothing(t, r.engine.reloads, "reload to the failed revision")
}

// In image mode, the agent waits for the code container to deliver the
// image's files into the shared volume, saying so in its report, and runs
// them from there.
func TestAgentRunsTheCodeImageItsContainerDelivers(t *testing.T) {
	r := newRig(t, "api-0", nil, "app", pod.CodeContainer)
	ref := "registry.example/api-code:v7"
	r.snapshot("r7", revision.Spec{Groups: groups, Image: &v1alpha1.ImageCodeSource{Reference: ref, Path: "/code"}}, nil)
	r.start("api-0")
	r.annotate("api-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r7"})
	r.waitReportThat("api-0", "r7 Reloading, waiting for the code container", func(st v1alpha1.AgentStatus) bool {
		return st.Revision == "r7" && st.State == v1alpha1.AgentReloading &&
			strings.Contains(st.Message, "waiting for container softreload-code to deliver image "+ref+" (path /code)")
	})
	nothing(t, r.starts, "engine start before the code is there")

	image := t.TempDir() // the image's /code
	must(t, os.WriteFile(filepath.Join(image, "app.py"), []byte("v7"), 0o644))
	dir := pod.ImageCodeDir(r.root, ref, "/code")
	must(t, pod.CopyTree(image, dir)) // what agent code-sync does
	first := receive(t, r.starts, "engine start")
	if first.Name != "r7" || first.Dir != dir || readFile(t, filepath.Join(first.Dir, "app.py")) != "v7" {
		t.Fatalf("the engine starts with %+v, want r7 from %s", first, dir)
	}
}

// A code image revision sent to a pod that has no code container (made
// while its pool took its code from a ConfigMap) fails at once, saying why,
// instead of waiting for code that cannot come.
func TestAgentWithoutACodeContainerFailsAnImageRevision(t *testing.T) {
	r := newRig(t, "api-1", nil)
	r.snapshot("r1", revision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
	r.snapshot("r2", revision.Spec{Groups: groups, Image: &v1alpha1.ImageCodeSource{Reference: "registry.example/code:v2", Path: "/code"}}, nil)
	r.start("api-1")
	r.annotate("api-1", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
	receive(t, r.starts, "engine start")
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}
	r.annotate("api-1", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
	r.waitReportThat("api-1", "r2 Failed: no code container", func(st v1alpha1.AgentStatus) bool {
		return st.Revision == "r2" && st.State == v1alpha1.AgentFailed && st.Running == "r1" &&
			strings.Contains(st.Message, "this pod has no softreload-code container")
	})
	nothing(t, r.engine.reloads, "reload to a revision whose code cannot come")
}

// A fetch never holds the agent: while it waits for a snapshot, a newer
// desired revision (a rollback, say) goes first, the engine's reports are
// still published, and the snapshot that shows up late is not run.
func TestANewerRevisionDoesNotWaitForAFetch(t *testing.T) {
	r := newRig(t, "web-2", nil)
	r.snapshot("r1", revision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
	r.start("web-2")
	r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
	receive(t, r.starts, "engine start")
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}

	r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"}) // no snapshot yet
	r.waitLog("Waiting for the revision's snapshot")
	// The engine's own news still reaches the pod.
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 0, Total: 1}
	r.waitReportThat("web-2", "the engine's count while r2 is fetched", func(st v1alpha1.AgentStatus) bool {
		return st.Revision == "r2" && st.Ready == 0 && st.Total == 1
	})

	r.snapshot("r3", revision.Spec{Groups: groups}, map[string]string{"app.py": "v3"})
	r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r3"})
	if got := receive(t, r.engine.reloads, "reload to r3"); got.Name != "r3" {
		t.Fatalf("reload to %q, want r3", got.Name)
	}
	r.snapshot("r2", revision.Spec{Groups: groups}, map[string]string{"app.py": "v2"})
	nothing(t, r.engine.reloads, "reload to r2, which the pod no longer wants")
}

// An agent that restarts while the API server cannot be reached serves the
// revision it ran before at once, from what it kept in the code root, and
// catches up with its pod once the API server answers.
func TestARestartedAgentServesWithoutTheAPIServer(t *testing.T) {
	r := newRig(t, "web-3", nil)
	r.snapshot("r1", revision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
	stop := r.start("web-3")
	r.annotate("web-3", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
	first := receive(t, r.starts, "engine start")
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}
	r.waitReport("web-3", v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1})
	stop()

	// An API server that refuses every connection: a port nothing listens on.
	unreachable := newClient(t, &rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", loopback.FreePort(t))})
	r.startWith(unreachable, "web-3")
	again := receive(t, r.starts, "engine start without the API server")
	if again.Name != "r1" || again.Dir != first.Dir || len(again.Spec.Groups) != 1 || readFile(t, filepath.Join(again.Dir, "app.py")) != "v1" {
		t.Fatalf("the restarted agent runs %+v, want r1 from %s with its groups", again, first.Dir)
	}
}

// A restarted agent with the API server back goes on from the pod: the
// revision it kept is not reloaded, a newer desired one is.
func TestARestartedAgentCatchesUp(t *testing.T) {
	r := newRig(t, "web-4", nil)
	r.snapshot("r1", revision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
	r.snapshot("r2", revision.Spec{Groups: groups}, map[string]string{"app.py": "v2"})
	stop := r.start("web-4")
	r.annotate("web-4", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
	receive(t, r.starts, "engine start")
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}
	r.waitReport("web-4", v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1})
	stop()

	r.annotate("web-4", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
	r.start("web-4")
	if got := receive(t, r.starts, "engine start"); got.Name != "r1" {
		t.Fatalf("the restarted agent starts %q, want r1, what it ran", got.Name)
	}
	if got := receive(t, r.engine.reloads, "reload to r2"); got.Name != "r2" {
		t.Fatalf("reload to %q, want r2", got.Name)
	}
}

// An agent that restarts serving from its local state still remembers,
// from its pod, a revision that failed here: it neither tries it again nor
// writes a report over the failure.
func TestARestartedAgentKeepsItsFailures(t *testing.T) {
	r := newRig(t, "web-5", nil)
	r.snapshot("r1", revision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
	r.snapshot("r2", revision.Spec{Groups: groups}, map[string]string{"app.py": "v2"})
	stop := r.start("web-5")
	r.annotate("web-5", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
	receive(t, r.starts, "engine start")
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}
	r.annotate("web-5", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
	receive(t, r.engine.reloads, "reload to r2")
	failed := v1alpha1.AgentStatus{Revision: "r2", State: v1alpha1.AgentFailed, Running: "r1", Ready: 1, Total: 1, Message: "worker exited"}
	r.engine.status <- failed
	r.waitReport("web-5", failed)
	stop()

	r.start("web-5")
	if got := receive(t, r.starts, "engine start"); got.Name != "r1" {
		t.Fatalf("the restarted agent runs %q, want r1", got.Name)
	}
	r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}
	nothing(t, r.engine.reloads, "reload to the revision that failed here")
	r.waitReport("web-5", failed)
}
