package pod_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/softreload/softreload/agent/pod"
	"github.com/softreload/softreload/agent/testworker"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/loopback"
	"github.com/softreload/softreload/internal/testing/suite"
)

const (
	// wait bounds the wait for anything the agent does.
	wait = 20 * time.Second
	// quiet is how long the agent must do nothing to be found doing
	// nothing.
	quiet = time.Second
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
	ctx    context.Context
	kube   kubernetes.Interface
	ns     string
	root   string
	starts chan pod.Revision // the revision each engine is built with
	engine *fakeEngine
	log    *testworker.Output // the agent's log
}

// newRig creates pod name with annotations and containers (app if none) in
// a namespace of its own.
func newRig(name string, annotations map[string]string, containers ...string) *rig {
	if len(containers) == 0 {
		containers = []string{"app"}
	}
	var specs []corev1.Container
	for _, c := range containers {
		specs = append(specs, corev1.Container{Name: c, Image: c})
	}
	ctx, cancel := context.WithCancel(context.Background())
	DeferCleanup(cancel)
	kube := kubernetes.NewForConfigOrDie(env.Config)
	ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "agent-"}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = kube.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: specs},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return &rig{
		ctx: ctx, kube: kube, ns: ns.Name, root: GinkgoT().TempDir(),
		starts: make(chan pod.Revision, 10),
		engine: &fakeEngine{reloads: make(chan pod.Revision, 10), status: make(chan v1alpha1.AgentStatus, 10)},
		log:    &testworker.Output{},
	}
}

// start runs the agent of pod name until the spec ends, or until the
// returned function stops it.
func (r *rig) start(name string) (stop func()) {
	return r.startWith(newClient(env.Config), name)
}

// startWith runs the agent of pod name with client until the spec ends, or
// until the returned function stops it.
func (r *rig) startWith(client pod.Client, name string) (stop func()) {
	a, err := pod.New(pod.Options{
		Client: client, Namespace: r.ns, PodName: name, Pool: "web", CodeRoot: r.root,
		ImageTimeout: wait,
		Logger:       slog.New(slog.NewTextHandler(r.log, nil)),
		NewEngine: func(first pod.Revision) (pod.Engine, error) {
			r.starts <- first
			return r.engine, nil
		},
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			Expect(<-done).To(Succeed(), "the agent")
		})
	}
	DeferCleanup(stop)
	return stop
}

// newClient is the agent's own client of the API server at cfg.
func newClient(cfg *rest.Config) pod.Client {
	c, err := pod.NewClient(cfg)
	Expect(err).NotTo(HaveOccurred())
	return c
}

// snapshot creates revision rev's snapshot as the controller does.
func (r *rig) snapshot(rev string, spec poolrevision.Spec, files map[string]string) {
	pool := &v1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: r.ns, UID: "pool-uid"}}
	cm, err := poolrevision.NewSnapshot(pool, rev, spec, poolrevision.Code{Data: files})
	Expect(err).NotTo(HaveOccurred())
	_, err = r.kube.CoreV1().ConfigMaps(r.ns).Create(r.ctx, cm, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// annotate merges annotations into the pod, as the controller does.
func (r *rig) annotate(name string, annotations map[string]string) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	Expect(err).NotTo(HaveOccurred())
	_, err = r.kube.CoreV1().Pods(r.ns).Patch(r.ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// report reads the pod's status annotation; none is the zero status.
func (r *rig) report(name string) func() (v1alpha1.AgentStatus, error) {
	return env.AgentReport(r.ctx, r.ns, name)
}

// watchReports records each report written to the pod from now on, in
// order; the returned function says what it recorded so far.
func (r *rig) watchReports(name string) func() []v1alpha1.AgentStatus {
	GinkgoHelper()
	p, err := r.kube.CoreV1().Pods(r.ns).Get(r.ctx, name, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	w, err := r.kube.CoreV1().Pods(r.ns).Watch(r.ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + name, ResourceVersion: p.ResourceVersion})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(w.Stop)
	var mu sync.Mutex
	var written []v1alpha1.AgentStatus
	last := p.Annotations[v1alpha1.StatusAnnotation]
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Annotations[v1alpha1.StatusAnnotation] == last {
				continue // not a pod, or another change of the pod
			}
			last = p.Annotations[v1alpha1.StatusAnnotation]
			st, err := v1alpha1.ParseAgentStatus(last)
			if err != nil {
				st = &v1alpha1.AgentStatus{Message: err.Error()}
			}
			mu.Lock()
			written = append(written, *st)
			mu.Unlock()
		}
	}()
	return func() []v1alpha1.AgentStatus {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(written)
	}
}

// waitReport waits until the pod's status annotation is one that matcher
// takes; a status is taken as equal.
func (r *rig) waitReport(name string, matcher any) {
	GinkgoHelper()
	Eventually(r.report(name)).WithTimeout(wait).WithPolling(50*time.Millisecond).Should(matchStatus(matcher), "the pod's report")
}

func matchStatus(m any) gtypes.GomegaMatcher {
	if st, ok := m.(v1alpha1.AgentStatus); ok {
		return Equal(st)
	}
	return m.(gtypes.GomegaMatcher)
}

// status matches a report field by field.
func status(revision string, state v1alpha1.AgentState, running string, more ...gtypes.GomegaMatcher) gtypes.GomegaMatcher {
	return SatisfyAll(append([]gtypes.GomegaMatcher{
		HaveField("Revision", revision), HaveField("State", state), HaveField("Running", running),
	}, more...)...)
}

// waitLog waits until the agent has logged line.
func (r *rig) waitLog(line string) {
	GinkgoHelper()
	Eventually(r.log.String).WithTimeout(wait).Should(ContainSubstring(line), "the agent's log")
}

// receive waits for what ch delivers; what says what it is.
func receive[T any](ch <-chan T, what string) T {
	GinkgoHelper()
	var v T
	Eventually(ch).WithTimeout(wait).Should(Receive(&v), "no %s", what)
	return v
}

// nothing checks that ch stays empty for a while.
func nothing[T any](ch <-chan T, what string) {
	GinkgoHelper()
	Consistently(ch).WithTimeout(quiet).ShouldNot(Receive(), "unexpected %s", what)
}

func readFile(path string) string {
	GinkgoHelper()
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	return string(b)
}

var groups = []v1alpha1.WorkerGroup{{Name: "web", Command: []string{"python3", "app.py"}}}

// readyR1 is the engine's report of one worker ready at r1.
var readyR1 = v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 1, Total: 1}

var _ = Describe("The pod agent", Label(suite.ControlPlane), func() {
	// The agent starts the workers at the revision its pod asks for, with
	// the snapshot's files and groups; reloads once per new revision, even
	// when the snapshot comes after the annotation; reports what the engine
	// says; and answers a rollback after a failure by asking the engine for
	// the running revision.
	It("follows its pod", func() {
		r := newRig("web-0", nil)
		r.snapshot("r1", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "print('v1')"})
		r.start("web-0")
		r.annotate("web-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})

		first := receive(r.starts, "engine start")
		Expect(first.Name).To(Equal("r1"), "the engine's first revision")
		Expect(first.Spec.Groups).To(HaveLen(1))
		Expect(first.Spec.Groups[0].Name).To(Equal("web"))
		Expect(readFile(filepath.Join(first.Dir, "app.py"))).To(Equal("print('v1')"), "revision r1's app.py")
		r.engine.status <- readyR1
		r.waitReport("web-0", readyR1)

		By("waiting for a snapshot that comes after the annotation")
		// The controller may set the annotation before the agent can read
		// the snapshot (its Role is updated a moment later).
		r.annotate("web-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
		r.waitLog("Waiting for the revision's snapshot")
		r.waitReport("web-0", status("r2", v1alpha1.AgentReloading, "r1", HaveField("Message", ContainSubstring("waiting for snapshot web-r2"))))
		r.snapshot("r2", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "print('v2')"})
		second := receive(r.engine.reloads, "reload to r2")
		Expect(second.Name).To(Equal("r2"))
		Expect(readFile(filepath.Join(second.Dir, "app.py"))).To(Equal("print('v2')"))
		Expect(second.Dir).NotTo(Equal(first.Dir), "revision r2 was written over revision r1's directory")
		Expect(readFile(filepath.Join(first.Dir, "app.py"))).To(Equal("print('v1')"), "revision r2 was written over revision r1's directory")

		By("not reloading for any other change of the pod")
		r.annotate("web-0", map[string]string{"example.com/unrelated": "1"})
		nothing(r.engine.reloads, "reload")

		By("reporting a failure as the engine says, and passing the rollback to the engine")
		// The rollback (desired back to r1) is passed to the engine, which
		// replaces nothing and reports Ready.
		failed := v1alpha1.AgentStatus{Revision: "r2", State: v1alpha1.AgentFailed, Running: "r1", Ready: 1, Total: 1, Message: "worker exited"}
		r.engine.status <- failed
		r.waitReport("web-0", failed)
		r.annotate("web-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		Expect(receive(r.engine.reloads, "rollback to r1").Name).To(Equal("r1"))
		r.engine.status <- readyR1
		r.waitReport("web-0", readyR1)

		By("not trying again a revision that failed here")
		r.annotate("web-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
		nothing(r.engine.reloads, "reload to a revision that failed here")
		r.waitReport("web-0", failed)
	})

	// A reload that ends within v1alpha1.ReloadingReportDelay is written
	// once, by its outcome; a longer one is written Reloading once it has
	// lasted that long, then by its outcome.
	It("writes a quick reload once", func() {
		r := newRig("web-2", nil)
		for _, rev := range []string{"r1", "r2", "r3"} {
			r.snapshot(rev, poolrevision.Spec{Groups: groups}, map[string]string{"app.py": rev})
		}
		r.start("web-2")
		r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		receive(r.starts, "engine start")
		r.engine.status <- readyR1
		r.waitReport("web-2", readyR1)
		written := r.watchReports("web-2")
		reloading := func(rev, running string) v1alpha1.AgentStatus {
			return v1alpha1.AgentStatus{Revision: rev, State: v1alpha1.AgentReloading, Running: running, Ready: 1, Total: 1}
		}
		ready := func(rev string) v1alpha1.AgentStatus {
			return v1alpha1.AgentStatus{Revision: rev, State: v1alpha1.AgentReady, Running: rev, Ready: 1, Total: 1}
		}

		By("a reload that ends at once: its outcome alone")
		r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
		Expect(receive(r.engine.reloads, "reload to r2").Name).To(Equal("r2"))
		r.engine.status <- reloading("r2", "r1")
		r.engine.status <- ready("r2")
		r.waitReport("web-2", ready("r2"))
		Eventually(written).WithTimeout(wait).Should(Equal([]v1alpha1.AgentStatus{ready("r2")}), "the reports written")

		By("a reload that lasts: Reloading once it has lasted the delay, then its outcome")
		r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r3"})
		Expect(receive(r.engine.reloads, "reload to r3").Name).To(Equal("r3"))
		began := time.Now()
		r.engine.status <- reloading("r3", "r2")
		r.waitReport("web-2", reloading("r3", "r2"))
		Expect(time.Since(began)).To(BeNumerically(">=", v1alpha1.ReloadingReportDelay), "when Reloading was written")
		r.engine.status <- ready("r3")
		r.waitReport("web-2", ready("r3"))
		Eventually(written).WithTimeout(wait).Should(Equal([]v1alpha1.AgentStatus{ready("r2"), reloading("r3", "r2"), ready("r3")}), "the reports written")
	})

	// A restarted agent whose pod last reported a failed revision starts
	// the workers at the revision it went back to, not at the failed one,
	// and keeps reporting the failure.
	It("remembers a failure across restarts", func() {
		failed := v1alpha1.AgentStatus{Revision: "r2", State: v1alpha1.AgentFailed, Running: "r1", Ready: 2, Total: 2, Message: "not ready in time"}
		raw, err := json.Marshal(failed)
		Expect(err).NotTo(HaveOccurred())
		r := newRig("web-1", map[string]string{
			v1alpha1.DesiredRevisionAnnotation: "r2",
			v1alpha1.StatusAnnotation:          string(raw),
		})
		r.snapshot("r1", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
		r.snapshot("r2", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v2"})
		r.start("web-1")

		Expect(receive(r.starts, "engine start").Name).To(Equal("r1"), "the restarted agent's revision (r2 failed here)")
		r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 2, Total: 2}
		r.waitReport("web-1", failed)
		nothing(r.engine.reloads, "reload to the failed revision")
	})

	// In image mode, the agent waits for the code container to deliver the
	// image's files into the shared volume, saying so in its report, and
	// runs them from there.
	It("runs the code image its container delivers", func() {
		r := newRig("api-0", nil, "app", pod.CodeContainer)
		ref := "registry.example/api-code:v7"
		r.snapshot("r7", poolrevision.Spec{Groups: groups, Image: &v1alpha1.ImageCodeSource{Reference: ref, Path: "/code"}}, nil)
		r.start("api-0")
		r.annotate("api-0", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r7"})
		r.waitReport("api-0", SatisfyAll(HaveField("Revision", "r7"), HaveField("State", v1alpha1.AgentReloading),
			HaveField("Message", ContainSubstring("waiting for container softreload-code to deliver image "+ref+" (path /code)"))))
		nothing(r.starts, "engine start before the code is there")

		image := GinkgoT().TempDir() // the image's /code
		Expect(os.WriteFile(filepath.Join(image, "app.py"), []byte("v7"), 0o644)).To(Succeed())
		dir := pod.ImageCodeDir(r.root, ref, "/code")
		Expect(pod.CopyTree(image, dir)).To(Succeed()) // what agent code-sync does
		first := receive(r.starts, "engine start")
		Expect(first.Name).To(Equal("r7"))
		Expect(first.Dir).To(Equal(dir))
		Expect(readFile(filepath.Join(first.Dir, "app.py"))).To(Equal("v7"))
	})

	// A code image revision sent to a pod that has no code container (made
	// while its pool took its code from a ConfigMap) fails at once, saying
	// why, instead of waiting for code that cannot come.
	It("without a code container fails an image revision", func() {
		r := newRig("api-1", nil)
		r.snapshot("r1", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
		r.snapshot("r2", poolrevision.Spec{Groups: groups, Image: &v1alpha1.ImageCodeSource{Reference: "registry.example/code:v2", Path: "/code"}}, nil)
		r.start("api-1")
		r.annotate("api-1", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		receive(r.starts, "engine start")
		r.engine.status <- readyR1
		r.annotate("api-1", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
		r.waitReport("api-1", status("r2", v1alpha1.AgentFailed, "r1", HaveField("Message", ContainSubstring("this pod has no softreload-code container"))))
		nothing(r.engine.reloads, "reload to a revision whose code cannot come")
	})

	// A fetch never holds the agent: while it waits for a snapshot, a newer
	// desired revision (a rollback, say) goes first, the engine's reports
	// are still published, and the snapshot that shows up late is not run.
	It("does not hold a newer revision for a fetch", func() {
		r := newRig("web-2", nil)
		r.snapshot("r1", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
		r.start("web-2")
		r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		receive(r.starts, "engine start")
		r.engine.status <- readyR1

		r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"}) // no snapshot yet
		r.waitLog("Waiting for the revision's snapshot")
		By("publishing the engine's own news meanwhile")
		r.engine.status <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Running: "r1", Ready: 0, Total: 1}
		r.waitReport("web-2", SatisfyAll(HaveField("Revision", "r2"), HaveField("Ready", BeEquivalentTo(0)), HaveField("Total", BeEquivalentTo(1))))

		r.snapshot("r3", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v3"})
		r.annotate("web-2", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r3"})
		Expect(receive(r.engine.reloads, "reload to r3").Name).To(Equal("r3"))
		r.snapshot("r2", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v2"})
		nothing(r.engine.reloads, "reload to r2, which the pod no longer wants")
	})

	// An agent that restarts while the API server cannot be reached serves
	// the revision it ran before at once, from what it kept in the code
	// root, and catches up with its pod once the API server answers.
	It("restarted serves without the API server", func() {
		r := newRig("web-3", nil)
		r.snapshot("r1", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
		stop := r.start("web-3")
		r.annotate("web-3", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		first := receive(r.starts, "engine start")
		r.engine.status <- readyR1
		r.waitReport("web-3", readyR1)
		stop()

		// An API server that refuses every connection: a port nothing
		// listens on.
		unreachable := newClient(&rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", loopback.FreePort(GinkgoTB()))})
		r.startWith(unreachable, "web-3")
		again := receive(r.starts, "engine start without the API server")
		Expect(again.Name).To(Equal("r1"))
		Expect(again.Dir).To(Equal(first.Dir))
		Expect(again.Spec.Groups).To(HaveLen(1))
		Expect(readFile(filepath.Join(again.Dir, "app.py"))).To(Equal("v1"))
	})

	// A restarted agent with the API server back goes on from the pod: the
	// revision it kept is not reloaded, a newer desired one is.
	It("restarted catches up", func() {
		r := newRig("web-4", nil)
		r.snapshot("r1", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
		r.snapshot("r2", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v2"})
		stop := r.start("web-4")
		r.annotate("web-4", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		receive(r.starts, "engine start")
		r.engine.status <- readyR1
		r.waitReport("web-4", readyR1)
		stop()

		r.annotate("web-4", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
		r.start("web-4")
		Expect(receive(r.starts, "engine start").Name).To(Equal("r1"), "the restarted agent starts what it ran")
		Expect(receive(r.engine.reloads, "reload to r2").Name).To(Equal("r2"))
	})

	// An agent that restarts serving from its local state still remembers,
	// from its pod, a revision that failed here: it neither tries it again
	// nor writes a report over the failure.
	It("restarted keeps its failures", func() {
		r := newRig("web-5", nil)
		r.snapshot("r1", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v1"})
		r.snapshot("r2", poolrevision.Spec{Groups: groups}, map[string]string{"app.py": "v2"})
		stop := r.start("web-5")
		r.annotate("web-5", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		receive(r.starts, "engine start")
		r.engine.status <- readyR1
		r.annotate("web-5", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
		receive(r.engine.reloads, "reload to r2")
		failed := v1alpha1.AgentStatus{Revision: "r2", State: v1alpha1.AgentFailed, Running: "r1", Ready: 1, Total: 1, Message: "worker exited"}
		r.engine.status <- failed
		r.waitReport("web-5", failed)
		stop()

		r.start("web-5")
		Expect(receive(r.starts, "engine start").Name).To(Equal("r1"), "the restarted agent's revision")
		r.engine.status <- readyR1
		nothing(r.engine.reloads, "reload to the revision that failed here")
		r.waitReport("web-5", failed)
	})
})
