// Package podrecord follows the pods of a WorkerPool through the API server
// for the end-to-end tests: what each pod was told and reported, when it
// became Ready at each revision, and the most pods reloading at once, the
// figure the rollout budget (maxUnavailable) bounds.
//
// It counts the pods reloading at once in states the API server really
// held, and only in those. A Recorder is a reflector's store: the reflector
// hands it the watch events one at a time in resourceVersion order, each a
// real state of the namespace, and the list of a relist (after the API
// server restarts, or when a watch expires) as one consistent snapshot,
// which it applies whole before counting. An informer's event handlers are
// told of a relist one pod at a time, in no particular order: counting after
// each of those mixes the new state of one pod with the old state of
// another, a state that never was.
package podrecord

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// Pod is what the recorder knows of one pod.
type Pod struct {
	UID string
	// Desired is its desired revision, Report its agent's report.
	Desired string
	Report  v1alpha1.AgentStatus
	// Asked lists every desired revision it was sent, in order.
	Asked []string
	// Reports lists every report its agent published, in order.
	Reports []v1alpha1.AgentStatus
	// ReadyAt is when it was last seen becoming Ready at each revision.
	ReadyAt map[string]time.Time
	// Ready says whether it runs its desired revision, Ready.
	Ready bool
	// Last is the pod as last seen (once deleted, its final status), and
	// Gone says it is deleted or being deleted.
	Last *corev1.Pod
	Gone bool
}

// Reloading says whether the pod counts against maxUnavailable: it was
// asked for a revision it does not serve, ready, yet.
func (p Pod) Reloading() bool {
	return !p.Gone && p.Desired != "" && (p.Report.Revision != p.Desired || p.Report.State != v1alpha1.AgentReady)
}

// Recorder follows the pods; see the package's comment.
type Recorder struct {
	mu         sync.Mutex
	pods       map[string]*Pod
	maxAtOnce  int
	atOnceWhen string
	synced     chan struct{} // closed by the first list
	now        func() time.Time
}

var _ cache.ReflectorStore = (*Recorder)(nil)

// New returns a recorder that no reflector feeds yet: Start's, or a test's.
func New() *Recorder {
	return &Recorder{pods: map[string]*Pod{}, synced: make(chan struct{}), now: time.Now}
}

// Start records the pods of namespace that selector (a label selector, ""
// for all) matches until ctx is done. It returns once they were listed.
func Start(ctx context.Context, kube kubernetes.Interface, namespace, selector string) (*Recorder, error) {
	r := New()
	pods := kube.CoreV1().Pods(namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return pods.Watch(ctx, o)
		},
	}
	go cache.NewReflector(lw, &corev1.Pod{}, r, 0).RunWithContext(ctx)
	select {
	case <-r.synced:
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("the pods of namespace %s were never listed: %w", namespace, ctx.Err())
	}
}

// Add records a pod seen for the first time (a watch event).
func (r *Recorder) Add(obj any) error { return r.Update(obj) }

// Update records one change of one pod (a watch event), then counts.
func (r *Recorder) Update(obj any) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return fmt.Errorf("recording pods: got a %T", obj)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply(pod, false)
	r.count()
	return nil
}

// Delete records a pod's deletion; what it knew of the pod stays.
func (r *Recorder) Delete(obj any) error {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return fmt.Errorf("recording pods: got a %T", obj)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apply(pod, true)
	r.count()
	return nil
}

// Replace records a relist: every pod as of one resourceVersion, applied
// whole before counting; a pod not in the list is gone.
func (r *Recorder) Replace(list []any, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, obj := range list {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return fmt.Errorf("recording pods: got a %T", obj)
		}
		seen[pod.Name] = true
		r.apply(pod, false)
	}
	for name, p := range r.pods {
		if !seen[name] {
			p.Gone = true
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
func (r *Recorder) Resync() error { return nil }

// apply records pod; r.mu is held.
func (r *Recorder) apply(pod *corev1.Pod, gone bool) {
	p := r.pods[pod.Name]
	if p == nil || p.UID != string(pod.UID) {
		p = &Pod{UID: string(pod.UID), ReadyAt: map[string]time.Time{}}
		r.pods[pod.Name] = p
	}
	p.Last, p.Gone = pod.DeepCopy(), gone || pod.DeletionTimestamp != nil
	if d := pod.Annotations[v1alpha1.DesiredRevisionAnnotation]; d != p.Desired {
		p.Desired = d
		p.Asked = append(p.Asked, d)
	}
	p.Report = v1alpha1.AgentStatus{}
	if st, _ := v1alpha1.ParseAgentStatus(pod.Annotations[v1alpha1.StatusAnnotation]); st != nil {
		p.Report = *st
	}
	if n := len(p.Reports); p.Report.State != "" && (n == 0 || !sameReport(p.Reports[n-1], p.Report)) {
		p.Reports = append(p.Reports, p.Report)
	}
	ready := p.Desired != "" && p.Report.Revision == p.Desired && p.Report.State == v1alpha1.AgentReady
	if ready && !p.Ready {
		p.ReadyAt[p.Desired] = r.now()
	}
	p.Ready = ready
}

// sameReport says whether two reports tell the same: state, revision, what
// runs, and why.
func sameReport(a, b v1alpha1.AgentStatus) bool {
	return a.State == b.State && a.Revision == b.Revision && a.Running == b.Running && a.Message == b.Message
}

// count updates the most pods reloading at once; r.mu is held.
func (r *Recorder) count() {
	n := 0
	for _, p := range r.pods {
		if p.Reloading() {
			n++
		}
	}
	if n > r.maxAtOnce {
		r.maxAtOnce = n
		r.atOnceWhen = r.describe()
	}
}

// describe prints every pod that is not gone; r.mu is held.
func (r *Recorder) describe() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(r.pods)) {
		p := r.pods[name]
		if p.Gone {
			continue
		}
		fmt.Fprintf(&b, "  %s: desired %q, reports %s %s (running %s) %s\n", name, p.Desired, p.Report.State, p.Report.Revision, p.Report.Running, p.Report.Message)
	}
	return b.String()
}

// String prints every pod that is not gone.
func (r *Recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.describe()
}

// ResetMax starts counting the pods reloading at once afresh.
func (r *Recorder) ResetMax() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxAtOnce, r.atOnceWhen = 0, ""
}

// Max is the most pods reloading at once since the start or ResetMax, and
// the pods at that moment.
func (r *Recorder) Max() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxAtOnce, r.atOnceWhen
}

// Pod returns a copy of what the recorder knows of the pod named name.
func (r *Recorder) Pod(name string) Pod {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pods[name]
	if p == nil {
		return Pod{}
	}
	c := *p
	c.Asked = slices.Clone(p.Asked)
	c.Reports = slices.Clone(p.Reports)
	c.ReadyAt = maps.Clone(p.ReadyAt)
	return c
}

// TimesAsked counts how often the pod named name was sent rev.
func (r *Recorder) TimesAsked(name, rev string) int {
	n := 0
	for _, a := range r.Pod(name).Asked {
		if a == rev {
			n++
		}
	}
	return n
}
