package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// A pool reads its own pods from the cache (PodPoolIndex). The pods its
// selector matches that it does not govern, which the SelectorOverlap
// condition names, are not in that view: the manager caches no pod without
// a pool label (CacheOptions), and a pod labelled for another pool wakes
// only that pool. A pool asks the API server for them (their metadata
// alone, from its watch cache) when its selector changes and then at most
// once per strayCheckPeriod, and is reconciled again after that period; in
// between it uses the last answer.

// strayCheckPeriod is how often a pool looks for the selected pods it does
// not govern.
const strayCheckPeriod = 10 * time.Second

// strays is the last answer for one pool.
type strays struct {
	selector string
	at       time.Time
	pods     []corev1.Pod
}

// podsOfOthers returns the pods selector matches, in the pool's namespace,
// whose pool label is not the pool's name, or missing.
func (r *WorkerPoolReconciler) podsOfOthers(ctx context.Context, s *scope, selector labels.Selector) ([]corev1.Pod, error) {
	key := client.ObjectKeyFromObject(s.pool)
	now := r.clock.Now()
	if last, ok := r.mem.strays(key); ok && last.selector == selector.String() && now.Sub(last.at) < strayCheckPeriod {
		return last.pods, nil
	}
	// != also matches the pods without the label.
	notOurs, err := labels.NewRequirement(workersv1alpha1.PoolLabel, selection.NotEquals, []string{s.pool.Name})
	if err != nil {
		return nil, fmt.Errorf("selecting the pods not labelled %s=%s: %w", workersv1alpha1.PoolLabel, s.pool.Name, err)
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
	if err := r.reader.List(ctx, list, client.InNamespace(s.pool.Namespace),
		client.MatchingLabelsSelector{Selector: selector.Add(*notOurs)},
		&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: "0"}}); err != nil {
		return nil, fmt.Errorf("listing the pods WorkerPool %s selects but does not govern: %w", s.pool.Name, err)
	}
	pods := make([]corev1.Pod, 0, len(list.Items))
	for _, m := range list.Items {
		pods = append(pods, corev1.Pod{ObjectMeta: m.ObjectMeta})
	}
	r.mem.setStrays(key, strays{selector: selector.String(), at: now, pods: pods})
	return pods, nil
}

// strays returns the pool's last answer.
func (m *memory) strays(pool types.NamespacedName) (strays, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm, ok := m.pools[pool]
	if !ok || pm.strays == nil {
		return strays{}, false
	}
	return *pm.strays, true
}

// setStrays records the pool's answer.
func (m *memory) setStrays(pool types.NamespacedName, s strays) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.of(pool).strays = &s
}
