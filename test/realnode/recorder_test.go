//go:build realnode

package realnode

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
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// podView is what the test knows of a pod from the API server.
type podView struct {
	uid     string
	desired string
	report  v1alpha1.AgentStatus
	// asked lists every desired revision the pod was sent, in order.
	asked []string
	// readyAt is when the pod was last seen becoming Ready at each
	// revision it was asked to run.
	readyAt map[string]time.Time
	// ready says whether the pod runs its desired revision, Ready.
	ready bool
	// last is the pod as last seen (on deletion, its final status).
	last *corev1.Pod
	gone bool
}

// reloading says whether the pod counts against maxUnavailable: it was
// asked for a revision it does not yet serve, ready.
func (v podView) reloading() bool {
	return !v.gone && v.desired != "" && (v.report.Revision != v.desired || v.report.State != v1alpha1.AgentReady)
}

// recorder follows every change of the example's pods: what each was asked
// and reported, when it became Ready at each revision, and the most pods
// reloading at once.
type recorder struct {
	mu         sync.Mutex
	pods       map[string]*podView
	maxAtOnce  int
	atOnceWhen string
}

func recordPods(ctx context.Context, kube kubernetes.Interface, namespace, selector string) (*recorder, error) {
	r := &recorder{pods: map[string]*podView{}}
	factory := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	informer := factory.Core().V1().Pods().Informer()
	on := func(obj any, gone bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			r.observe(pod, gone)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { on(obj, false) },
		UpdateFunc: func(_, obj any) { on(obj, false) },
		DeleteFunc: func(obj any) { on(obj, true) },
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil, fmt.Errorf("the pod informer did not sync")
	}
	return r, nil
}

func (r *recorder) observe(pod *corev1.Pod, gone bool) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.pods[pod.Name]
	if v == nil {
		v = &podView{uid: string(pod.UID), readyAt: map[string]time.Time{}}
		r.pods[pod.Name] = v
	}
	v.last, v.gone = pod.DeepCopy(), gone || pod.DeletionTimestamp != nil
	if d := pod.Annotations[v1alpha1.DesiredRevisionAnnotation]; d != v.desired {
		v.desired = d
		v.asked = append(v.asked, d)
	}
	v.report = v1alpha1.AgentStatus{}
	if st, _ := v1alpha1.ParseAgentStatus(pod.Annotations[v1alpha1.StatusAnnotation]); st != nil {
		v.report = *st
	}
	ready := v.desired != "" && v.report.Revision == v.desired && v.report.State == v1alpha1.AgentReady
	if ready && !v.ready {
		v.readyAt[v.desired] = now
	}
	v.ready = ready
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
func (r *recorder) describe() string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(r.pods)) {
		p := r.pods[name]
		if p.gone {
			continue
		}
		fmt.Fprintf(&b, "  %s: desired %q, reports %s %s (running %s) %s\n", name, p.desired, p.report.State, p.report.Revision, p.report.Running, p.report.Message)
	}
	return b.String()
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.describe()
}

// resetMax starts counting the pods reloading at once afresh.
func (r *recorder) resetMax() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.maxAtOnce, r.atOnceWhen = 0, ""
}

func (r *recorder) max() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxAtOnce, r.atOnceWhen
}

// view returns a copy of what the recorder knows of pod.
func (r *recorder) view(pod string) podView {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.pods[pod]
	if v == nil {
		return podView{}
	}
	c := *v
	c.asked = slices.Clone(v.asked)
	c.readyAt = maps.Clone(v.readyAt)
	return c
}

// timesAsked counts how often pod was sent rev.
func (r *recorder) timesAsked(pod, rev string) int {
	n := 0
	for _, a := range r.view(pod).asked {
		if a == rev {
			n++
		}
	}
	return n
}
