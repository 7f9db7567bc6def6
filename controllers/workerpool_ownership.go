package controllers

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// One pod, one pool. A pod belongs to the WorkerPool its
// softreload.dev/pool label names, the pool whose agent the injection
// webhook put into it; a pool governs the pods its selector matches that
// belong to it, and no other. The selector alone is not enough: two pools
// whose selectors overlap would both send revisions to the same pods, and a
// matched pod without the label has no agent, never reports, and would hold
// a slot of the budget for good. Like a ReplicaSet, which ignores the pods
// another controller owns, a pool leaves such pods alone and says so in its
// SelectorOverlap condition.

// EventSelectorOverlap is the Warning event told when a pool's selector
// starts matching pods the pool does not govern.
const EventSelectorOverlap = "SelectorOverlap"

// maxNamedPods is how many pods a condition's message names.
const maxNamedPods = 3

// governs reports whether pool governs pod, a pod its selector matches:
// whether the pod's softreload.dev/pool label names the pool.
func governs(pool *workersv1alpha1.WorkerPool, pod *corev1.Pod) bool {
	return pod.Labels[workersv1alpha1.PoolLabel] == pool.Name
}

// notGoverned is what a pool's selector matches but the pool does not
// govern: the pods labelled for other pools, by pool, and the pods without
// the label.
type notGoverned struct {
	byPool    map[string][]string
	unlabeled []string
}

// notGovernedOf sorts out, of the pods the selector matches (pods being
// deleted aside), those that pool does not govern.
func notGovernedOf(pool *workersv1alpha1.WorkerPool, pods []corev1.Pod) notGoverned {
	ng := notGoverned{byPool: map[string][]string{}}
	for i := range pods {
		pod := &pods[i]
		if !pod.DeletionTimestamp.IsZero() || governs(pool, pod) {
			continue
		}
		if owner, ok := pod.Labels[workersv1alpha1.PoolLabel]; ok {
			ng.byPool[owner] = append(ng.byPool[owner], pod.Name)
		} else {
			ng.unlabeled = append(ng.unlabeled, pod.Name)
		}
	}
	return ng
}

// setSelectorOverlapCondition: True when the selector matches pods the pool
// does not govern, with a message that names a few of them and their pools.
func setSelectorOverlapCondition(conds *[]metav1.Condition, ng notGoverned, gen int64, now metav1.Time) {
	cond := metav1.Condition{Type: workersv1alpha1.ConditionSelectorOverlap, ObservedGeneration: gen, LastTransitionTime: now,
		Status: metav1.ConditionTrue}
	var parts []string
	pools := make([]string, 0, len(ng.byPool))
	for p := range ng.byPool {
		pools = append(pools, p)
	}
	slices.Sort(pools)
	for _, p := range pools {
		parts = append(parts, fmt.Sprintf("%s of WorkerPool %s (%s=%s)",
			namePods(ng.byPool[p]), p, workersv1alpha1.PoolLabel, p))
	}
	if len(ng.unlabeled) > 0 {
		parts = append(parts, fmt.Sprintf("%s without the %s label (no agent)", namePods(ng.unlabeled), workersv1alpha1.PoolLabel))
	}
	switch {
	case len(pools) > 0:
		cond.Reason = workersv1alpha1.ReasonPodsOfOtherPools
	case len(ng.unlabeled) > 0:
		cond.Reason = workersv1alpha1.ReasonPodsWithoutPoolLabel
	default:
		cond.Status, cond.Reason = metav1.ConditionFalse, workersv1alpha1.ReasonNoOverlap
		cond.Message = "The pool governs every pod its selector matches"
	}
	if len(parts) > 0 {
		cond.Message = fmt.Sprintf("spec.selector also matches %s: this pool never writes to them and they hold no slot of its budget; narrow spec.selector, or label the pods %s=<pool>",
			strings.Join(parts, "; "), workersv1alpha1.PoolLabel)
	}
	meta.SetStatusCondition(conds, cond)
}

// namePods names at most maxNamedPods of pods, sorted, and counts the rest.
func namePods(pods []string) string {
	pods = slices.Sorted(slices.Values(pods))
	noun := "pod"
	if len(pods) > 1 {
		noun = "pods"
	}
	if len(pods) <= maxNamedPods {
		return noun + " " + strings.Join(pods, ", ")
	}
	return fmt.Sprintf("%s %s and %d more", noun, strings.Join(pods[:maxNamedPods], ", "), len(pods)-maxNamedPods)
}

// announceOverlap tells a Warning event when the SelectorOverlap condition
// turns True or changes its reason; the note is the condition's message.
func (r *WorkerPoolReconciler) announceOverlap(before, after *workersv1alpha1.WorkerPool) {
	prev := meta.FindStatusCondition(before.Status.Conditions, workersv1alpha1.ConditionSelectorOverlap)
	cur := meta.FindStatusCondition(after.Status.Conditions, workersv1alpha1.ConditionSelectorOverlap)
	if cur == nil || cur.Status != metav1.ConditionTrue {
		return
	}
	if prev != nil && prev.Status == cur.Status && prev.Reason == cur.Reason {
		return
	}
	r.recorder.Eventf(after, nil, corev1.EventTypeWarning, EventSelectorOverlap, actionObserve, "%s", cur.Message)
}
