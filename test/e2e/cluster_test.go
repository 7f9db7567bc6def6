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
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
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
}

// reloading says whether the pod counts against maxUnavailable: it was
// asked for a revision it does not yet serve, ready.
func (v podView) reloading() bool {
	return v.desired != "" && (v.report.Revision != v.desired || v.report.State != v1alpha1.AgentReady)
}

// podRecorder follows every change of the pool's pods: what each was asked
// and reported, and the most pods reloading at once.
type podRecorder struct {
	mu         sync.Mutex
	pods       map[string]*podView
	maxAtOnce  int
	atOnceWhen string
}

func recordPods(ctx context.Context, t *testing.T, kube kubernetes.Interface, namespace string) *podRecorder {
	t.Helper()
	r := &podRecorder{pods: map[string]*podView{}}
	factory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace))
	informer := factory.Core().V1().Pods().Informer()
	on := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			r.observe(pod)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: on, UpdateFunc: func(_, obj any) { on(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatal("pod informer did not sync")
	}
	return r
}

func (r *podRecorder) observe(pod *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
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
	st, err := control.NewClient(filepath.Join(p.CodeDir, "agent.sock")).Status(ctx)
	if err != nil {
		t.Fatalf("pod %s: agent status: %v", p.Name, err)
	}
	return st
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
