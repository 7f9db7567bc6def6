package controllers

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/fakeagent"
	"github.com/softreload/softreload/internal/testing/suite"
)

// The WorkerPool specs run on one real API server, started once for the
// suite; each spec has its own namespace, its own manager watching only that
// namespace, and test agents that answer for the pods the way the agent in
// a pod would. With go test -short no control plane starts and only the
// specs that need none run.
//
// Each spec starts its own manager rather than sharing one: a manager
// starts and stops in a fraction of a second here (the shortest specs,
// manager and rollout together, take half a second, the suite about a
// minute), and its own manager is what several specs test (a
// fake clock for the progress deadline, the generated ClusterRole's
// rights through impersonation, a restart mid-rollout, a manager without
// the agent-access controller). It also keeps the specs apart: a manager
// caches the spec's namespace alone, while a shared one would go on
// reconciling every earlier spec's pool, whose test agents have stopped,
// and write its events and errors beside the next spec's.

var poolEnv *envtest.Env

func TestControllers(t *testing.T) { suite.Run(t, "controllers") }

var _ = BeforeSuite(func() {
	logger := logr.Discard()
	if os.Getenv("SOFTRELOAD_TEST_LOG") != "" {
		logger = funcr.New(func(prefix, args string) { log.Println(prefix, args) }, funcr.Options{Verbosity: 1})
	}
	ctrl.SetLogger(logger)
	// A rollout on a loaded machine takes seconds, not Gomega's default 1s.
	SetDefaultEventuallyTimeout(timeout)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	poolEnv = controlplane.Start(envtest.Options{})
})

var _ = AfterSuite(func() { controlplane.Stop(poolEnv) })

const (
	timeout  = 90 * time.Second
	poolName = "web"
	codeName = "web-code"
)

// fixture is one test's namespace, manager and agents.
type fixture struct {
	ctx     context.Context
	ns      string
	c       client.Client
	agents  *agents
	stopMgr func()
}

// newFixture makes a namespace and starts the test agents for it, until
// the spec ends.
func newFixture() *fixture {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(context.Background())
	DeferCleanup(cancel)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wp-"}}
	Expect(poolEnv.Client.Create(ctx, ns)).To(Succeed(), "creating a namespace")
	f := &fixture{ctx: ctx, ns: ns.Name, c: poolEnv.Client}
	f.agents = startAgents(ctx, ns.Name)
	return f
}

// startManager runs the WorkerPool controller for the fixture's namespace
// until the test ends or stopManager is called.
func (f *fixture) startManager(clk clock.PassiveClock) {
	GinkgoHelper()
	f.startManagerWith(poolEnv.Config, clk)
}

// startManagerWith is startManager with the manager's own API credentials.
func (f *fixture) startManagerWith(cfg *rest.Config, clk clock.PassiveClock) {
	GinkgoHelper()
	f.startControllers(cfg, clk, true)
}

// startControllers runs the WorkerPool controller and, with access, the
// agent-access controller that grants the agents their rights, as the
// manager does.
func (f *fixture) startControllers(cfg *rest.Config, clk clock.PassiveClock, access bool) {
	GinkgoHelper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 poolEnv.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  testCacheOptions(f.ns),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred(), "creating a manager")
	r := NewWorkerPoolReconciler(mgr.GetClient(), mgr.GetEventRecorder("softreload"), clk)
	Expect(r.SetupWithManager(mgr)).To(Succeed(), "setting up the reconciler")
	if access {
		Expect(NewAgentAccessReconciler(mgr.GetClient()).SetupWithManager(mgr)).To(Succeed(), "setting up the agent access reconciler")
	}
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	f.stopMgr = func() {
		once.Do(func() {
			cancel()
			Expect(<-done).To(Succeed(), "manager")
		})
	}
	DeferCleanup(f.stopMgr)
}

func (f *fixture) stopManager() { f.stopMgr() }

// testCacheOptions are the manager's cache options (CacheOptions), limited
// to the test's namespace.
func testCacheOptions(ns string) cache.Options {
	opts := CacheOptions()
	opts.DefaultNamespaces = map[string]cache.Config{ns: {}}
	return opts
}

// Builders.

func (f *fixture) createCode(data map[string]string) {
	GinkgoHelper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: codeName, Namespace: f.ns}, Data: data}
	Expect(f.c.Create(f.ctx, cm)).To(Succeed())
}

func (f *fixture) editCode(data map[string]string) {
	GinkgoHelper()
	cm := &corev1.ConfigMap{}
	Expect(f.c.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: codeName}, cm)).To(Succeed())
	cm.Data = data
	Expect(f.c.Update(f.ctx, cm)).To(Succeed())
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
	GinkgoHelper()
	Expect(f.c.Create(f.ctx, newPool(f.ns, change...))).To(Succeed())
}

// updatePool changes the pool's spec or metadata, retrying on conflicts.
func (f *fixture) updatePool(change func(*workersv1alpha1.WorkerPool)) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := f.pool()
		change(p)
		return f.c.Update(f.ctx, p)
	})).To(Succeed())
}

func (f *fixture) createPods(names ...string) {
	GinkgoHelper()
	for _, name := range names {
		Expect(f.c.Create(f.ctx, newPod(f.ns, name))).To(Succeed())
	}
}

func newPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web", workersv1alpha1.PoolLabel: poolName}},
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
	GinkgoHelper()
	p := &workersv1alpha1.WorkerPool{}
	Expect(f.c.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: poolName}, p)).To(Succeed())
	return p
}

func (f *fixture) pod(name string) *corev1.Pod {
	GinkgoHelper()
	p := &corev1.Pod{}
	Expect(f.c.Get(f.ctx, types.NamespacedName{Namespace: f.ns, Name: name}, p)).To(Succeed())
	return p
}

// waitRollout waits for a revision other than from to complete on pods
// pods, and returns it.
func (f *fixture) waitRollout(from string, pods int) string {
	GinkgoHelper()
	Eventually(func() error {
		if got := f.pool().Status.UpdateRevision; got == from {
			return fmt.Errorf("updateRevision still %s", got)
		}
		return nil
	}).Should(Succeed(), "a new revision")
	return f.waitComplete(pods)
}

// waitComplete waits until the pool's status describes its current spec
// and every pod runs one revision, and returns that revision.
func (f *fixture) waitComplete(pods int) string {
	GinkgoHelper()
	var rev string
	Eventually(func() error {
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
	}).Should(Succeed(), "the rollout completes")
	return rev
}

func (f *fixture) condition(typ string) *metav1.Condition {
	return meta.FindStatusCondition(f.pool().Status.Conditions, typ)
}

// waitCondition waits for the condition to have the status and reason.
func (f *fixture) waitCondition(typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	GinkgoHelper()
	var got *metav1.Condition
	Eventually(func() error {
		got = f.condition(typ)
		if got == nil || got.Status != status || got.Reason != reason {
			return fmt.Errorf("%s: %+v", typ, got)
		}
		return nil
	}).Should(Succeed(), fmt.Sprintf("%s is %s (%s)", typ, status, reason))
	return got
}

// waitReconciled waits until the status describes the pool's generation:
// a reconcile has seen the latest spec.
func (f *fixture) waitReconciled() {
	GinkgoHelper()
	Eventually(func() error {
		p := f.pool()
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
		}
		return nil
	}).Should(Succeed(), "the status observes the latest generation")
}

// events returns the notes of the pool's events with reason.
func (f *fixture) events(reason string) []string {
	GinkgoHelper()
	list := &eventsv1.EventList{}
	Expect(f.c.List(f.ctx, list, client.InNamespace(f.ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Reason == reason && e.Regarding.Kind == "WorkerPool" {
			out = append(out, e.Type+": "+e.Note)
		}
	}
	return out
}

func (f *fixture) waitEvent(reason string) []string {
	GinkgoHelper()
	var got []string
	Eventually(func() error {
		if got = f.events(reason); len(got) == 0 {
			return fmt.Errorf("no %s event", reason)
		}
		return nil
	}).Should(Succeed(), "a "+reason+" event")
	return got
}

// containAll matches a string that contains every one of want.
func containAll(want ...string) gtypes.GomegaMatcher {
	matchers := make([]gtypes.GomegaMatcher, 0, len(want))
	for _, w := range want {
		matchers = append(matchers, ContainSubstring(w))
	}
	return SatisfyAll(matchers...)
}

// The test agents.

// outcome is what a test agent does with a revision it is told.
type outcome = fakeagent.Outcome

const (
	succeed = fakeagent.Succeed // report Ready
	fail    = fakeagent.Fail    // report Failed (running the previous revision)
	silent  = fakeagent.Silent  // report nothing at all
)

// agents answer for every pod of a test's namespace the way its agent
// would (internal/testing/fakeagent), and record what each pod was told and
// the most pods that were ever in flight at once.
type agents struct {
	*fakeagent.Agents
	ns string
}

func startAgents(ctx context.Context, ns string) *agents {
	GinkgoHelper()
	a, err := fakeagent.Start(ctx, poolEnv.Config, fakeagent.Options{
		Namespace: ns,
		Delay:     100 * time.Millisecond,
		// Called from the agents' goroutines: GinkgoRecover hands the
		// failure to the spec instead of crashing the test binary.
		OnError: func(err error) {
			defer GinkgoRecover()
			Fail("test agents: " + err.Error())
		},
	})
	Expect(err).NotTo(HaveOccurred(), "starting the test agents")
	return &agents{Agents: a, ns: ns}
}

// setBehaviour decides what the agents do with each revision from now on.
func (a *agents) setBehaviour(f func(pod, rev string) outcome) { a.SetBehaviour(f) }

// hold makes the agents of the pods f picks stop in their reload, until
// releaseHeld.
func (a *agents) hold(f func(pod string) bool) { a.Hold(f) }

func (a *agents) releaseHeld() { a.ReleaseHeld() }

// resetMaxInFlight starts counting anew once the agents' own watch shows
// every pod settled: it is called after a rollout completed, and the pool's
// status can say so before that watch delivers the agents' last reports.
func (a *agents) resetMaxInFlight() {
	GinkgoHelper()
	Eventually(a.InFlight).WithPolling(10*time.Millisecond).Should(BeZero(),
		"the test agents still see pods in flight")
	a.ResetCounts()
}

// sentTo returns the revisions pod was told, in order.
func (a *agents) sentTo(pod string) []string { return a.SentTo(a.ns + "/" + pod) }
