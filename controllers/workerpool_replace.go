package controllers

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/rollout"
)

// Pod replacement. A revision that changes a group that is not reloadable
// leaves that group's processes, and so its spec, as they are in every
// running pod: the agent reports the group outdated. Such pods, and those
// created before a replacePodsAt request, need new pods. With podReplacement
// Hold the PodsOutdated condition names them and nothing else happens; with
// Evict (or a request) the controller evicts them through the Eviction API,
// which honours their PodDisruptionBudgets, and their workload makes new
// pods, which the webhook starts at the update revision.
//
// The budget is maxUnavailable, as for reloads. An eviction holds a slot
// from the moment the API server accepts it until a pod created after it
// reports the update revision ready with every group current: the evicted
// pod may be gone long before its replacement exists, so the status records
// each eviction of the replacement under way (status.evictions) and a
// restarted controller counts it too. A pod with a worker down counts as
// unavailable already, so the outdated ones among them are evicted first
// and need no slot.
// Evictions start only once the pods' reloads are over; a refusal (429: a
// PodDisruptionBudget allows no disruption now) is retried a few seconds
// later, never turned into a delete.

// Event reasons of pod replacement.
const (
	// EventPodEvicted: a pod was evicted to be replaced (Normal).
	EventPodEvicted = "PodEvicted"
	// EventEvictionBlocked: the Eviction API refuses to evict a pod for now
	// (Warning, once each time it starts refusing).
	EventEvictionBlocked = "EvictionBlocked"
	// EventInvalidReplaceRequest: the replacePodsAt annotation is not an
	// RFC 3339 time (Warning).
	EventInvalidReplaceRequest = "InvalidReplaceRequest"

	actionEvict = "Evict"
)

// evictionRetry is how soon an eviction the API server refused is tried
// again.
const evictionRetry = 5 * time.Second

// maxEvictions is how many evictions the status may record (its MaxItems).
const maxEvictions = 256

// maxNamed is how many pods a condition's message names.
const maxNamed = 5

// replacePod is what pod replacement knows of one governed pod.
type replacePod struct {
	rollout.Pod
	created     time.Time
	terminating bool
}

// replaceInput is everything a replacement plan depends on.
type replaceInput struct {
	target         string
	policy         workersv1alpha1.PodReplacementPolicy
	requestedAt    time.Time // zero: no request
	paused, halted bool
	maxUnavailable int
	// expiry is how long an eviction may wait for its replacement before
	// it no longer holds a slot (the progress deadline).
	expiry    time.Duration
	now       time.Time
	pods      []replacePod
	evictions []workersv1alpha1.PodEviction
}

// replacePlan is what to do about the pods that need new pods.
type replacePlan struct {
	// outdated are the pods that need new pods, by name, with why.
	outdated map[string]string
	// evictions are the evictions of the replacement under way, to record
	// in the status; pending are those still waiting for a new pod.
	evictions, pending []workersv1alpha1.PodEviction
	// evict are the pods to evict now, in order.
	evict []string
	// active says the pods are being replaced (Evict, or a request);
	// waiting says why no eviction may start yet, "" when one may.
	active  bool
	waiting string
}

// needsNewPod says why p needs a new pod, "" when it does not.
func needsNewPod(p replacePod, in replaceInput) string {
	if p.terminating {
		return ""
	}
	if rollout.Runs(p.Pod, in.target) {
		var why []string
		for _, g := range p.Report.Outdated() {
			why = append(why, fmt.Sprintf("group %s: %s", g.Name, g.Outdated))
		}
		if len(why) > 0 {
			return strings.Join(why, ", ")
		}
	}
	if !in.requestedAt.IsZero() && p.created.Before(in.requestedAt) {
		return "created before the replacement asked at " + in.requestedAt.UTC().Format(time.RFC3339)
	}
	return ""
}

// current says p runs the target with every group at its spec.
func current(p replacePod, target string) bool {
	return !p.terminating && rollout.Runs(p.Pod, target) && len(p.Report.Outdated()) == 0
}

// planReplacement decides which pods to evict now: pure, given the pods.
func planReplacement(in replaceInput) replacePlan {
	plan := replacePlan{outdated: map[string]string{}}
	requested := false
	for _, p := range in.pods {
		if why := needsNewPod(p, in); why != "" {
			plan.outdated[p.Name] = why
			requested = requested || !in.requestedAt.IsZero() && p.created.Before(in.requestedAt)
		}
	}
	if len(plan.outdated) == 0 && len(in.evictions) == 0 {
		return plan // nothing to replace and nothing under way: every reconcile of a rollout
	}
	pods := slices.Clone(in.pods)
	slices.SortFunc(pods, func(a, b replacePod) int { return cmp.Compare(a.Name, b.Name) })
	plan.evictions, plan.pending = matchEvictions(in, pods)
	if len(plan.outdated) == 0 && len(plan.pending) == 0 {
		plan.evictions = nil // the replacement is over
	}
	plan.active = in.policy == workersv1alpha1.PodReplacementEvict && len(plan.outdated) > 0 || requested || len(plan.pending) > 0
	if !plan.active || len(plan.outdated) == 0 {
		return plan
	}
	if plan.waiting = waitingFor(in, pods, plan.pending); plan.waiting != "" {
		return plan
	}

	// What is unavailable now: the evictions still waiting, the pods being
	// deleted that no eviction of ours accounts for, and the pods that do
	// not serve with every worker, but the new ones (created after the
	// oldest waiting eviction: its replacements, counted by it).
	evicted := map[string]bool{}
	for _, e := range plan.evictions {
		evicted[e.Pod] = true
	}
	unavailable := len(plan.pending)
	for _, p := range pods {
		switch {
		case evicted[p.Name]:
		case p.terminating:
			unavailable++
		case len(plan.pending) > 0 && !p.created.Before(plan.pending[0].EvictedAt.Truncate(time.Second)):
		case rollout.InFlight(p.Pod) || p.Report == nil || p.Report.Ready < p.Report.Total:
			unavailable++
		}
	}
	// An outdated pod that does not serve with every worker counts as
	// unavailable already: evicting it takes nothing more away, so it goes
	// first and needs no slot, as the Deployment controller replaces its
	// unhealthy pods first. Otherwise pods with a worker down could fill
	// the budget and never be replaced.
	candidate := func(p replacePod) bool {
		return plan.outdated[p.Name] != "" && !evicted[p.Name] && rollout.Runs(p.Pod, in.target)
	}
	for _, p := range pods {
		if len(plan.evictions)+len(plan.evict) >= maxEvictions {
			return plan
		}
		if candidate(p) && p.Report.Ready < p.Report.Total {
			plan.evict = append(plan.evict, p.Name)
			evicted[p.Name] = true
		}
	}
	// The status records every eviction of the replacement under way.
	slots := min(in.maxUnavailable-unavailable, maxEvictions-len(plan.evictions)-len(plan.evict))
	for _, p := range pods {
		if slots <= 0 {
			break
		}
		if candidate(p) {
			plan.evict = append(plan.evict, p.Name)
			slots--
		}
	}
	return plan
}

// matchEvictions matches the recorded evictions, oldest first, each with
// the oldest pod not matched yet that was created after it (to the second:
// a creationTimestamp has no finer grain) and runs the target with every
// group current. Every eviction of the replacement under way stays recorded
// until it is over, so that a new pod, once matched, is never taken for the
// new pod of a later eviction. It returns the evictions to keep and those
// not matched: still waiting. One that waited longer than the expiry is
// dropped (its workload made no new pod: scaled down, or the pod had no
// controller).
func matchEvictions(in replaceInput, pods []replacePod) (kept, pending []workersv1alpha1.PodEviction) {
	evictions := slices.Clone(in.evictions)
	slices.SortStableFunc(evictions, func(a, b workersv1alpha1.PodEviction) int { return a.EvictedAt.Compare(b.EvictedAt.Time) })
	var fresh []replacePod
	for _, p := range pods {
		if current(p, in.target) {
			fresh = append(fresh, p)
		}
	}
	slices.SortStableFunc(fresh, func(a, b replacePod) int { return a.created.Compare(b.created) })
	used := map[string]bool{}
	for _, e := range evictions {
		i := slices.IndexFunc(fresh, func(p replacePod) bool {
			return !used[p.Name] && p.Name != e.Pod && !p.created.Before(e.EvictedAt.Truncate(time.Second))
		})
		switch {
		case i >= 0:
			used[fresh[i].Name] = true
			kept = append(kept, e)
		case in.expiry <= 0 || in.now.Sub(e.EvictedAt.Time) < in.expiry:
			kept = append(kept, e)
			pending = append(pending, e)
		}
	}
	return kept, pending
}

// waitingFor says why no pod may be evicted yet, "" when one may: the
// reloads must be over first, every pod settled at the target, but the new
// pods that replace the evicted ones.
func waitingFor(in replaceInput, pods []replacePod, pending []workersv1alpha1.PodEviction) string {
	switch {
	case in.target == "":
		return "no revision can be made"
	case in.paused:
		return "the pool is paused"
	case in.halted:
		return fmt.Sprintf("revision %s failed", in.target)
	}
	for _, p := range pods {
		replacement := len(pending) > 0 && !p.created.Before(pending[0].EvictedAt.Truncate(time.Second))
		if !p.terminating && !replacement && (p.Desired != in.target || rollout.InFlight(p.Pod)) {
			return fmt.Sprintf("the pods reload to revision %s first", in.target)
		}
	}
	return ""
}

// replaceRequestOf reads the pool's replacePodsAt request: the zero time
// when there is none, an error when it is no time.
func replaceRequestOf(pool *workersv1alpha1.WorkerPool) (time.Time, error) {
	v, ok := pool.Annotations[workersv1alpha1.ReplacePodsAtAnnotation]
	if !ok || v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("annotation %s=%q is not an RFC 3339 time (e.g. 2026-12-02T10:00:00Z): %w",
			workersv1alpha1.ReplacePodsAtAnnotation, v, err)
	}
	return t, nil
}

// +kubebuilder:rbac:groups="",resources=pods/eviction,verbs=create

// reconcileReplacement plans and makes the evictions of the pods that need
// new pods, and records in s what the status says of them.
func (r *WorkerPoolReconciler) reconcileReplacement(ctx context.Context, s *scope) error {
	if !s.planned || s.plan.Failure != nil {
		return nil
	}
	requestedAt, err := replaceRequestOf(s.pool)
	if err != nil {
		r.recorder.Eventf(s.pool, nil, corev1.EventTypeWarning, EventInvalidReplaceRequest, actionEvict, "%v", err)
	}
	key := client.ObjectKeyFromObject(s.pool)
	in := replaceInput{
		target: s.target, policy: s.pool.Spec.Strategy.PodReplacement, requestedAt: requestedAt,
		paused: s.pool.Spec.Paused, halted: halted(s.pool.Status.History, s.target),
		maxUnavailable: rollout.ResolveMaxUnavailable(s.pool.Spec.Strategy.MaxUnavailable, len(s.pods)),
		expiry:         time.Duration(s.pool.Spec.Strategy.ProgressDeadlineSeconds) * time.Second,
		now:            s.now.Time, evictions: r.evictions.with(key, s.pool.Status.Evictions),
	}
	for _, ps := range s.podStates { // read once by the plan: a pod's report is not parsed again
		in.pods = append(in.pods, replacePod{Pod: ps, created: s.pods[ps.Name].CreationTimestamp.Time})
	}
	for _, pod := range s.terminating {
		in.pods = append(in.pods, replacePodOf(pod, true))
	}
	plan := planReplacement(in)
	s.replace = &replaceState{plan: plan, policy: in.policy, target: s.target, maxUnavailable: in.maxUnavailable, paused: in.paused}
	for _, name := range plan.evict {
		blocked, err := r.evict(ctx, s, s.pods[name])
		if err != nil {
			return err
		}
		if blocked {
			s.replace.blocked = fmt.Sprintf("evicting pod %s is refused for now and retried: %s", name, s.replace.refusal)
			if c := meta.FindStatusCondition(s.before.Status.Conditions, workersv1alpha1.ConditionPodsOutdated); c == nil || c.Reason != workersv1alpha1.ReasonEvictionBlocked {
				r.recorder.Eventf(s.pool, s.pods[name], corev1.EventTypeWarning, EventEvictionBlocked, actionEvict,
					"Cannot evict pod %s to replace it for now, retried every %s: %s", name, evictionRetry, s.replace.refusal)
			}
			break
		}
	}
	r.evictions.set(key, s.replace.plan.evictions)
	return nil
}

// evictionMemory holds, by pool, the evictions the last reconcile
// recorded: an eviction is made before the status that records it is
// written, and that write may fail (a conflict) or the next reconcile may
// read the pool before the cache shows it. Forgetting an eviction would
// free its slot too early.
type evictionMemory struct {
	mu sync.Mutex
	m  map[types.NamespacedName][]workersv1alpha1.PodEviction
}

// with returns the evictions of the status and those remembered, by pod.
func (e *evictionMemory) with(key types.NamespacedName, status []workersv1alpha1.PodEviction) []workersv1alpha1.PodEviction {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := slices.Clone(status)
	for _, ev := range e.m[key] {
		if !slices.ContainsFunc(out, func(o workersv1alpha1.PodEviction) bool { return o.Pod == ev.Pod }) {
			out = append(out, ev)
		}
	}
	return out
}

// set remembers the evictions recorded.
func (e *evictionMemory) set(key types.NamespacedName, evictions []workersv1alpha1.PodEviction) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(evictions) == 0 {
		delete(e.m, key)
		return
	}
	if e.m == nil {
		e.m = map[types.NamespacedName][]workersv1alpha1.PodEviction{}
	}
	e.m[key] = slices.Clone(evictions)
}

// replacePodOf is what pod replacement needs of pod.
func replacePodOf(pod *corev1.Pod, terminating bool) replacePod {
	return replacePod{
		Pod: rollout.Pod{
			Name:    pod.Name,
			Desired: pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation],
			Report:  reportOf(pod),
		},
		created:     pod.CreationTimestamp.Time,
		terminating: terminating,
	}
}

// evict asks the Eviction API to evict pod. It returns true when the API
// server refuses for now (429: a PodDisruptionBudget allows no disruption),
// which is retried later; a pod already gone is no error.
func (r *WorkerPoolReconciler) evict(ctx context.Context, s *scope, pod *corev1.Pod) (bool, error) {
	target := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}
	uid := pod.UID
	eviction := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	}
	err := r.client.SubResource("eviction").Create(ctx, target, eviction)
	switch {
	case apierrors.IsTooManyRequests(err):
		s.replace.refusal = err.Error()
		return true, nil
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return false, nil // gone, or another pod of that name now
	case err != nil:
		return false, fmt.Errorf("evicting pod %s to replace it: %w", pod.Name, err)
	}
	why := s.replace.plan.outdated[pod.Name]
	e := workersv1alpha1.PodEviction{Pod: pod.Name, EvictedAt: s.now}
	s.replace.plan.evictions = append(s.replace.plan.evictions, e)
	s.replace.plan.pending = append(s.replace.plan.pending, e)
	s.replace.evicted = append(s.replace.evicted, pod.Name)
	r.recorder.Eventf(s.pool, pod, corev1.EventTypeNormal, EventPodEvicted, actionEvict,
		"Evicted pod %s to replace it (%s); its workload makes a new pod, which starts at revision %s", pod.Name, why, s.target)
	ctrl.LoggerFrom(ctx).Info("Evicted pod to replace it", "pod", klog.KObj(pod), "why", why)
	return false, nil
}

// replaceState is what a reconcile found and did about pod replacement,
// for the status.
type replaceState struct {
	plan           replacePlan
	policy         workersv1alpha1.PodReplacementPolicy
	target         string
	maxUnavailable int
	// paused: the pool is paused, and so is the replacement.
	paused bool
	// evicted are the pods evicted by this reconcile.
	evicted []string
	// refusal is the API server's answer to a refused eviction, blocked
	// what the condition says of it.
	refusal, blocked string
}

// namePodsWhy lists up to maxNamed of names, with why each, sorted.
func namePodsWhy(why map[string]string, names []string) string {
	slices.Sort(names)
	var parts []string
	for i, n := range names {
		if i == maxNamed {
			parts = append(parts, fmt.Sprintf("and %d more", len(names)-maxNamed))
			break
		}
		if w := why[n]; w != "" {
			parts = append(parts, fmt.Sprintf("%s (%s)", n, w))
		} else {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, ", ")
}

// setPodsOutdatedCondition writes the PodsOutdated condition and the
// evictions of the status from st, and returns what the Progressing
// condition says of a replacement under way ("" when none is, or the pool
// is paused).
func setPodsOutdatedCondition(status *workersv1alpha1.WorkerPoolStatus, st *replaceState, pool string, gen int64, now metav1.Time) string {
	if st == nil {
		return ""
	}
	status.Evictions = st.plan.evictions
	if len(status.Evictions) > maxEvictions {
		status.Evictions = status.Evictions[len(status.Evictions)-maxEvictions:]
	}
	cond := metav1.Condition{Type: workersv1alpha1.ConditionPodsOutdated, ObservedGeneration: gen, LastTransitionTime: now,
		Status: metav1.ConditionTrue}
	var toReplace []string
	for name := range st.plan.outdated {
		if !slices.Contains(st.evicted, name) {
			toReplace = append(toReplace, name)
		}
	}
	var waiting []string
	for _, e := range st.plan.pending {
		waiting = append(waiting, e.Pod)
	}
	progress := ""
	switch {
	case len(toReplace) == 0 && len(waiting) == 0:
		cond.Status, cond.Reason = metav1.ConditionFalse, workersv1alpha1.ReasonAllPodsCurrent
		cond.Message = "No pod needs to be replaced"
		if st.target != "" {
			cond.Message = fmt.Sprintf("Every pod runs its groups at the spec of revision %s, or is reloading to it", st.target)
		}
	case !st.plan.active:
		cond.Reason = workersv1alpha1.ReasonPodReplacementHeld
		cond.Message = fmt.Sprintf("%d pods keep a group that is not reloadable at an older spec than revision %s: %s. "+
			"They run it until they are replaced: set spec.strategy.podReplacement to Evict, run kubectl softreload replace-pods %s, or restart their workload",
			len(toReplace), st.target, namePodsWhy(st.plan.outdated, toReplace), pool)
	case st.blocked != "":
		cond.Reason = workersv1alpha1.ReasonEvictionBlocked
		cond.Message = fmt.Sprintf("Replacing %d pods: %s; %s", len(toReplace)+len(waiting), st.blocked, replaceProgress(st, toReplace, waiting))
		progress = cond.Message
	default:
		cond.Reason = workersv1alpha1.ReasonReplacingPods
		cond.Message = fmt.Sprintf("Replacing %d pods, at most %d at a time: %s", len(toReplace)+len(waiting), st.maxUnavailable, replaceProgress(st, toReplace, waiting))
		if st.plan.waiting != "" && len(waiting) == 0 {
			cond.Message += "; waiting: " + st.plan.waiting
		}
		if !st.paused {
			progress = cond.Message // a paused pool is not progressing
		}
	}
	meta.SetStatusCondition(&status.Conditions, cond)
	return progress
}

// replaceProgress says which pods wait for their replacements and which
// are still to be evicted.
func replaceProgress(st *replaceState, toReplace, waiting []string) string {
	var parts []string
	if len(waiting) > 0 {
		parts = append(parts, fmt.Sprintf("evicted %s, waiting for the new pods to report revision %s ready", namePodsWhy(nil, waiting), st.target))
	}
	if len(toReplace) > 0 {
		parts = append(parts, "to evict: "+namePodsWhy(st.plan.outdated, toReplace))
	}
	return strings.Join(parts, "; ")
}

// replaceRetry is how soon a reconcile that could not evict for now runs
// again; 0 when none is needed.
func (s *scope) replaceRetry() time.Duration {
	if s.replace != nil && s.replace.blocked != "" {
		return evictionRetry
	}
	return 0
}
