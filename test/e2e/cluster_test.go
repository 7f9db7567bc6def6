package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/supervisor"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/local"
)

// podView is what the test knows of a pod from the API server.
type podView struct {
	desired string
	report  v1alpha1.AgentStatus
	// asked lists every desired revision the pod was sent, in order.
	asked []string
	// reports lists every report the pod's agent published, in order.
	reports []v1alpha1.AgentStatus
}

// reloading says whether the pod counts against maxUnavailable: it was
// asked for a revision it does not yet serve, ready.
func (v podView) reloading() bool {
	return v.desired != "" && (v.report.Revision != v.desired || v.report.State != v1alpha1.AgentReady)
}

// podRecorder follows every change of the pool's pods: what each was asked
// and reported, and the most pods reloading at once.
//
// It counts the pods reloading at once in states the API server really
// held, and only in those. It is a reflector's store: the reflector hands
// it the watch events one at a time in resourceVersion order, each a real
// state of the namespace, and the list of a relist (after the API server
// restarts, or when a watch expires) as one consistent snapshot, which it
// applies whole before counting. An informer's event handlers are told of
// a relist one pod at a time, in no particular order: counting after each
// of those mixes the new state of one pod with the old state of another,
// a state that never was (hello-1 already told the new revision, hello-0
// still Reloading it from before the outage, though the controller told
// hello-1 only after hello-0 reported Ready).
type podRecorder struct {
	mu         sync.Mutex
	pods       map[string]*podView
	maxAtOnce  int
	atOnceWhen string
	synced     chan struct{} // closed by the first list
}

var _ cache.ReflectorStore = (*podRecorder)(nil)

func recordPods(ctx context.Context, t *testing.T, kube kubernetes.Interface, namespace string) *podRecorder {
	t.Helper()
	r := &podRecorder{pods: map[string]*podView{}, synced: make(chan struct{})}
	lw := cache.NewListWatchFromClient(kube.CoreV1().RESTClient(), "pods", namespace, fields.Everything())
	go cache.NewReflector(lw, &corev1.Pod{}, r, 0).RunWithContext(ctx)
	select {
	case <-r.synced:
	case <-ctx.Done():
		t.Fatal("the pods were never listed")
	}
	return r
}

// Add records a pod seen for the first time (a watch event).
func (r *podRecorder) Add(obj any) error { return r.Update(obj) }

// Update records one change of one pod (a watch event), then counts.
func (r *podRecorder) Update(obj any) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return fmt.Errorf("recording pods: got a %T", obj)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply(pod)
	r.count()
	return nil
}

// Delete forgets a pod.
func (r *podRecorder) Delete(obj any) error {
	if pod, ok := obj.(*corev1.Pod); ok {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.pods, pod.Name)
	}
	return nil
}

// Replace records a relist: every pod as of one resourceVersion, applied
// whole before counting.
func (r *podRecorder) Replace(list []any, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, obj := range list {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return fmt.Errorf("recording pods: got a %T", obj)
		}
		seen[pod.Name] = true
		r.apply(pod)
	}
	for name := range r.pods {
		if !seen[name] {
			delete(r.pods, name)
		}
	}
	r.count()
	select {
	case <-r.synced:
	default:
		close(r.synced)
	}
	return nil
}

// Resync has nothing to do: no resync period is set.
func (r *podRecorder) Resync() error { return nil }

// apply records pod's annotations; r.mu is held.
func (r *podRecorder) apply(pod *corev1.Pod) {
	v := r.pods[pod.Name]
	if v == nil {
		v = &podView{}
		r.pods[pod.Name] = v
	}
	if d := pod.Annotations[v1alpha1.DesiredRevisionAnnotation]; d != v.desired {
		v.desired = d
		v.asked = append(v.asked, d)
	}
	v.report = v1alpha1.AgentStatus{}
	if st, _ := v1alpha1.ParseAgentStatus(pod.Annotations[v1alpha1.StatusAnnotation]); st != nil {
		v.report = *st
	}
	if n := len(v.reports); v.report.State != "" && (n == 0 || !sameReport(v.reports[n-1], v.report)) {
		v.reports = append(v.reports, v.report)
	}
}

// sameReport says whether two reports tell the same: state, revision,
// what runs, and why.
func sameReport(a, b v1alpha1.AgentStatus) bool {
	return a.State == b.State && a.Revision == b.Revision && a.Running == b.Running && a.Message == b.Message
}

// count updates the most pods reloading at once; r.mu is held.
func (r *podRecorder) count() {
	n := 0
	for _, p := range r.pods {
		if p.reloading() {
			n++
		}
	}
	if n > r.maxAtOnce {
		r.maxAtOnce = n
		r.atOnceWhen = r.describe()
	}
}

// describe prints every pod; r.mu is held.
func (r *podRecorder) describe() string {
	var b strings.Builder
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.pods {
			if !yield(k) {
				return
			}
		}
	}) {
		p := r.pods[name]
		fmt.Fprintf(&b, "  %s: desired %q, reports %s %s (running %s)\n", name, p.desired, p.report.State, p.report.Revision, p.report.Running)
	}
	return b.String()
}

// resetMax starts counting the pods reloading at once afresh.
func (r *podRecorder) resetMax() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxAtOnce, r.atOnceWhen = 0, ""
}

func (r *podRecorder) max() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxAtOnce, r.atOnceWhen
}

// view returns a copy of what the recorder knows of pod.
func (r *podRecorder) view(pod string) podView {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.pods[pod]
	if v == nil {
		return podView{}
	}
	c := *v
	c.asked = slices.Clone(v.asked)
	c.reports = slices.Clone(v.reports)
	return c
}

// timesAsked counts how often pod was sent rev.
func (r *podRecorder) timesAsked(pod, rev string) int {
	n := 0
	for _, a := range r.view(pod).asked {
		if a == rev {
			n++
		}
	}
	return n
}

// workers asks a pod's agent, over its control socket, for its workers.
func workers(ctx context.Context, t *testing.T, p *local.Pod) supervisor.Status {
	t.Helper()
	st, err := agentStatus(ctx, p)
	if err != nil {
		t.Fatalf("pod %s: agent status: %v", p.Name, err)
	}
	return st
}

// agentStatus asks a pod's agent for its workers; an error says the agent
// does not answer (yet).
func agentStatus(ctx context.Context, p *local.Pod) (supervisor.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return control.NewClient(filepath.Join(p.CodeDir, "agent.sock")).Status(ctx)
}

// waitFor polls cond every 200ms until it holds or timeout passes.
func waitFor(ctx context.Context, t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		var ok bool
		ok, last = cond()
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v; last seen:\n%s", what, timeout, last)
	}
}

// getPool reads the pool; an error (the API server is away) is returned as
// a description for waitFor.
func getPool(ctx context.Context, c client.Client, namespace string) (*v1alpha1.WorkerPool, string) {
	pool := &v1alpha1.WorkerPool{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: local.ExamplePool}, pool); err != nil {
		return nil, err.Error()
	}
	return pool, describePool(pool)
}

func describePool(pool *v1alpha1.WorkerPool) string {
	var b strings.Builder
	s := pool.Status
	fmt.Fprintf(&b, "pool: generation %d observed %d, current %q update %q, pods %d updated %d ready %d reloading %d failed %d\n",
		pool.Generation, s.ObservedGeneration, s.CurrentRevision, s.UpdateRevision, s.Pods, s.UpdatedPods, s.ReadyPods, s.ReloadingPods, s.FailedPods)
	for _, c := range s.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func condition(pool *v1alpha1.WorkerPool, typ string) *metav1.Condition {
	for i := range pool.Status.Conditions {
		if pool.Status.Conditions[i].Type == typ {
			return &pool.Status.Conditions[i]
		}
	}
	return nil
}
