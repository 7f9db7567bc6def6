package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/rollout"
	"github.com/softreload/softreload/internal/testing/envtest"
)

// The WorkerPool tests run on one real API server; each test has its own
// namespace, its own manager watching only that namespace, and test agents
// that answer for the pods the way the agent in a pod would.

var poolEnv *envtest.Env

func TestMain(m *testing.M) {
	logger := logr.Discard()
	if os.Getenv("SOFTRELOAD_TEST_LOG") != "" {
		logger = funcr.New(func(prefix, args string) { log.Println(prefix, args) }, funcr.Options{Verbosity: 1})
	}
	ctrl.SetLogger(logger)
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	poolEnv = env
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

const (
	timeout  = 90 * time.Second
	poolName = "web"
	codeName = "web-code"
)

// fixture is one test's namespace, manager and agents.
type fixture struct {
	t       *testing.T
	ctx     context.Context
	ns      string
	c       client.Client
	agents  *agents
	stopMgr func()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wp-"}}
	if err := poolEnv.Client.Create(ctx, ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	f := &fixture{t: t, ctx: ctx, ns: ns.Name, c: poolEnv.Client}
	f.agents = startAgents(t, ctx, ns.Name)
	return f
}

// startManager runs the WorkerPool controller for the fixture's namespace
// until the test ends or stopManager is called.
func (f *fixture) startManager(clk clock.PassiveClock) {
	f.t.Helper()
	f.startManagerWith(poolEnv.Config, clk)
}

// startManagerWith is startManager with the manager's own API credentials.
func (f *fixture) startManagerWith(cfg *rest.Config, clk clock.PassiveClock) {
	f.t.Helper()
	f.startControllers(cfg, clk, true)
}

// startControllers runs the WorkerPool controller and, with access, the
// agent-access controller that grants the agents their rights, as the
// manager does.
func (f *fixture) startControllers(cfg *rest.Config, clk clock.PassiveClock, access bool) {
	f.t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 poolEnv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{f.ns: {}}},
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		f.t.Fatalf("creating a manager: %v", err)
	}
	r := NewWorkerPoolReconciler(mgr.GetClient(), mgr.GetEventRecorder("softreload"), clk)
	if err := r.SetupWithManager(mgr); err != nil {
		f.t.Fatalf("setting up the reconciler: %v", err)
	}
	if access {
		if err := NewAgentAccessReconciler(mgr.GetClient()).SetupWithManager(mgr); err != nil {
			f.t.Fatalf("setting up the agent access reconciler: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	f.stopMgr = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("manager: %v", err)
			}
		})
	}
	f.t.Cleanup(f.stopMgr)
}

func (f *fixture) stopManager() { f.stopMgr() }

// Builders.

func (f *fixture) createCode(data map[string]string) {
	f.t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: codeName, Namespace: f.ns}, Data: data}
	must(f.t, f.c.Create(f.ctx, cm))
}

func (f *fixture) editCode(data map[string]string) {
	f.t.Helper()
	cm := &corev1.ConfigMap{}
	must(f.t, f.c.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: codeName}, cm))
	cm.Data = data
	must(f.t, f.c.Update(f.ctx, cm))
}

func newPool(ns string, change ...func(*workersv1alpha1.WorkerPool)) *workersv1alpha1.WorkerPool {
	p := &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Name: poolName, Namespace: ns},
		Spec: workersv1alpha1.WorkerPoolSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Code:     workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: codeName}},
			Groups:   []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"python3", "server.py"}, Count: 2}},
		},
	}
	for _, c := range change {
		c(p)
	}
	return p
}

func maxUnavailable(v intstr.IntOrString) func(*workersv1alpha1.WorkerPool) {
	return func(p *workersv1alpha1.WorkerPool) { p.Spec.Strategy.MaxUnavailable = &v }
}

func rollback(policy workersv1alpha1.RollbackPolicy) func(*workersv1alpha1.WorkerPool) {
	return func(p *workersv1alpha1.WorkerPool) { p.Spec.Strategy.Rollback = policy }
}

func (f *fixture) createPool(change ...func(*workersv1alpha1.WorkerPool)) {
	f.t.Helper()
	must(f.t, f.c.Create(f.ctx, newPool(f.ns, change...)))
}

// updatePool changes the pool's spec or metadata, retrying on conflicts.
func (f *fixture) updatePool(change func(*workersv1alpha1.WorkerPool)) {
	f.t.Helper()
	for {
		p := f.pool()
		change(p)
		err := f.c.Update(f.ctx, p)
		if !apierrors.IsConflict(err) {
			must(f.t, err)
			return
		}
	}
}

func (f *fixture) createPods(names ...string) {
	f.t.Helper()
	for _, name := range names {
		must(f.t, f.c.Create(f.ctx, newPod(f.ns, name)))
	}
}

func newPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "app", Image: "registry.example/app:v1"},
		}},
	}
}

func podNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("web-%d", i)
	}
	return out
}

// Reading.

func (f *fixture) pool() *workersv1alpha1.WorkerPool {
	f.t.Helper()
	p := &workersv1alpha1.WorkerPool{}
	must(f.t, f.c.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: poolName}, p))
	return p
}

func (f *fixture) pod(name string) *corev1.Pod {
	f.t.Helper()
	p := &corev1.Pod{}
	must(f.t, f.c.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: name}, p))
	return p
}

// waitRollout waits for a revision other than from to complete on pods
// pods, and returns it.
func (f *fixture) waitRollout(from string, pods int) string {
	f.t.Helper()
	f.eventually("a new revision", func() error {
		if got := f.pool().Status.UpdateRevision; got == from {
			return fmt.Errorf("updateRevision still %s", got)
		}
		return nil
	})
	return f.waitComplete(pods)
}

// waitComplete waits until the pool's status describes its current spec
// and every pod runs one revision, and returns that revision.
func (f *fixture) waitComplete(pods int) string {
	f.t.Helper()
	var rev string
	f.eventually("the rollout completes", func() error {
		p := f.pool()
		st := p.Status
		c := meta.FindStatusCondition(st.Conditions, workersv1alpha1.ConditionProgressing)
		switch {
		case st.ObservedGeneration != p.Generation:
			return fmt.Errorf("observedGeneration %d, generation %d", st.ObservedGeneration, p.Generation)
		case c == nil || c.Reason != workersv1alpha1.ReasonRolloutComplete:
			return fmt.Errorf("progressing: %+v", c)
		case int(st.Pods) != pods || st.UpdatedPods != st.Pods || st.CurrentRevision != st.UpdateRevision:
			return fmt.Errorf("status %+v", st)
		}
		rev = st.CurrentRevision
		return nil
	})
	return rev
}

func (f *fixture) condition(typ string) *metav1.Condition {
	return meta.FindStatusCondition(f.pool().Status.Conditions, typ)
}

// waitCondition waits for the condition to have the status and reason.
func (f *fixture) waitCondition(typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	f.t.Helper()
	var got *metav1.Condition
	f.eventually(fmt.Sprintf("%s is %s (%s)", typ, status, reason), func() error {
		got = f.condition(typ)
		if got == nil || got.Status != status || got.Reason != reason {
			return fmt.Errorf("%s: %+v", typ, got)
		}
		return nil
	})
	return got
}

// waitReconciled waits until the status describes the pool's generation:
// a reconcile has seen the latest spec.
func (f *fixture) waitReconciled() {
	f.t.Helper()
	f.eventually("the status observes the latest generation", func() error {
		p := f.pool()
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
		}
		return nil
	})
}

// events returns the notes of the pool's events with reason.
func (f *fixture) events(reason string) []string {
	f.t.Helper()
	list := &eventsv1.EventList{}
	must(f.t, f.c.List(f.ctx, list, client.InNamespace(f.ns)))
	var out []string
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Kind == "WorkerPool" {
			out = append(out, e.Type+": "+e.Note)
		}
	}
	return out
}

func (f *fixture) waitEvent(reason string) []string {
	f.t.Helper()
	var got []string
	f.eventually("a "+reason+" event", func() error {
		if got = f.events(reason); len(got) == 0 {
			return fmt.Errorf("no %s event", reason)
		}
		return nil
	})
	return got
}

func (f *fixture) eventually(what string, cond func() error) {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: not within %s: %v", what, timeout, err)
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

// The test agents.

// outcome is what a test agent does with a revision it is told.
type outcome int

const (
	succeed outcome = iota // report Reloading, then Ready
	fail                   // report Reloading, then Failed (running the previous revision)
	silent                 // report nothing at all
)

// agents watch every pod of a namespace and answer for each the way its
// agent would. They also record, from the same watch, what each pod was
// told and the most pods that were ever in flight at once.
type agents struct {
	t   *testing.T
	ctx context.Context
	c   client.Client

	mu          sync.Mutex
	behave      func(pod, rev string) outcome
	delay       time.Duration
	pods        map[string]rollout.Pod
	sent        map[string][]string
	maxInFlight int
	wake        map[string]chan struct{}
	// held pods report Reloading and then wait for release.
	held    func(pod string) bool
	release chan struct{}
}

func startAgents(t *testing.T, ctx context.Context, ns string) *agents {
	wc, err := client.NewWithWatch(poolEnv.Config, client.Options{Scheme: poolEnv.Scheme})
	if err != nil {
		t.Fatalf("creating a watching client: %v", err)
	}
	a := &agents{
		t: t, ctx: ctx, c: poolEnv.Client,
		behave: func(string, string) outcome { return succeed },
		delay:  100 * time.Millisecond,
		pods:   map[string]rollout.Pod{}, sent: map[string][]string{}, wake: map[string]chan struct{}{},
		held: func(string) bool { return false }, release: make(chan struct{}),
	}
	w, err := wc.Watch(ctx, &corev1.PodList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatalf("watching pods: %v", err)
	}
	go a.observe(wc, w, ns)
	return a
}

// setBehaviour decides what the agents do with each revision from now on.
func (a *agents) setBehaviour(f func(pod, rev string) outcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.behave = f
}

// hold makes the agents of the pods f picks stop after reporting
// Reloading, until releaseHeld.
func (a *agents) hold(f func(pod string) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held = f
}

func (a *agents) releaseHeld() { close(a.release) }

// resetMaxInFlight starts counting anew, as of the pods as they are.
func (a *agents) resetMaxInFlight() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.maxInFlight = a.inFlightLocked()
}

func (a *agents) MaxInFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxInFlight
}

// sentTo returns the revisions pod was told, in order.
func (a *agents) sentTo(pod string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.sent[pod]...)
}

func (a *agents) inFlightLocked() int {
	n := 0
	for _, p := range a.pods {
		if rollout.InFlight(p) {
			n++
		}
	}
	return n
}

func (a *agents) observe(wc client.WithWatch, w watch.Interface, ns string) {
	var rv string
	for {
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			rv = pod.ResourceVersion
			a.record(ev.Type, pod)
		}
		if a.ctx.Err() != nil {
			return
		}
		// The watch ended early: go on from where it stopped.
		var err error
		w, err = wc.Watch(a.ctx, &corev1.PodList{}, client.InNamespace(ns),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			if a.ctx.Err() == nil {
				a.t.Errorf("watching pods again: %v", err)
			}
			return
		}
	}
}

func (a *agents) record(typ watch.EventType, pod *corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == watch.Deleted {
		delete(a.pods, pod.Name)
		return
	}
	p := rollout.Pod{Name: pod.Name, Desired: pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation], Report: reportOf(pod)}
	if old := a.pods[pod.Name]; p.Desired != "" && p.Desired != old.Desired {
		a.sent[pod.Name] = append(a.sent[pod.Name], p.Desired)
		wake, ok := a.wake[pod.Name]
		if !ok {
			wake = make(chan struct{}, 1)
			a.wake[pod.Name] = wake
			go a.run(pod.Namespace, pod.Name, wake)
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	a.pods[pod.Name] = p
	a.maxInFlight = max(a.maxInFlight, a.inFlightLocked())
}

// run is the agent of one pod: it loads each revision it is told, one at a
// time, and reports.
func (a *agents) run(ns, name string, wake <-chan struct{}) {
	var handled, running string
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-wake:
		}
		a.mu.Lock()
		rev, behave, delay, held := a.pods[name].Desired, a.behave, a.delay, a.held(name)
		a.mu.Unlock()
		if rev == "" || rev == handled {
			continue
		}
		handled = rev
		what := behave(name, rev)
		if what == silent {
			continue
		}
		a.report(ns, name, workersv1alpha1.AgentStatus{Revision: rev, Running: running, State: workersv1alpha1.AgentReloading, Ready: 1, Total: 2})
		if held {
			select {
			case <-a.ctx.Done():
				return
			case <-a.release:
			}
		}
		select {
		case <-a.ctx.Done():
			return
		case <-time.After(delay):
		}
		if what == fail {
			a.report(ns, name, workersv1alpha1.AgentStatus{Revision: rev, Running: running, State: workersv1alpha1.AgentFailed,
				Ready: 2, Total: 2, Message: "worker http-0 exited with status 1: SyntaxError"})
			continue
		}
		running = rev
		a.report(ns, name, workersv1alpha1.AgentStatus{Revision: rev, Running: rev, State: workersv1alpha1.AgentReady, Ready: 2, Total: 2})
	}
}

func (a *agents) report(ns, name string, st workersv1alpha1.AgentStatus) {
	b, _ := json.Marshal(st)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		workersv1alpha1.StatusAnnotation: string(b)}}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	err := a.c.Patch(a.ctx, pod, client.RawPatch(types.MergePatchType, patch))
	if err != nil && !apierrors.IsNotFound(err) && a.ctx.Err() == nil {
		a.t.Errorf("agent of pod %s: reporting: %v", name, err)
	}
}
