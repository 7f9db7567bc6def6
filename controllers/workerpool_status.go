package controllers

import (
	"fmt"
	"reflect"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/rollout"
)

// Causes of a revision, in the pool's history.
const (
	CauseCreated     = "Created"
	CauseCodeChanged = "CodeChanged"
	CauseSpecChanged = "SpecChanged"
	CauseRestart     = "Restart"
	CauseRollback    = "Rollback"
)

// Results of a revision, in the pool's history.
const (
	ResultComplete   = "Complete"
	ResultFailed     = "Failed"
	ResultRolledBack = "RolledBack"
	ResultSuperseded = "Superseded"
)

// maxHistory is the most revisions the status lists (the API's MaxItems).
const maxHistory = 20

// causeBetween says what changed from revision spec prev to next; the code,
// when nothing in the spec did.
func causeBetween(prev, next poolrevision.Spec) string {
	switch {
	case prev.RestartedAt != next.RestartedAt:
		return CauseRestart
	case !reflect.DeepEqual(prev.Image, next.Image):
		return CauseCodeChanged
	case !equality.Semantic.DeepEqual(prev, next):
		return CauseSpecChanged
	default:
		return CauseCodeChanged
	}
}

// halted says the history records that target failed.
func halted(history []workersv1alpha1.RevisionRecord, target string) bool {
	return target != "" && len(history) > 0 && history[0].Revision == target &&
		(history[0].Result == ResultFailed || history[0].Result == ResultRolledBack)
}

// computeStatus derives the whole status from the scope: pure, given the
// plan.
func computeStatus(s *scope) {
	st := &s.pool.Status
	before := s.before.Status
	st.ObservedGeneration = s.pool.Generation
	c := s.plan.Counts
	st.Pods, st.UpdatedPods, st.ReadyPods, st.ReloadingPods, st.FailedPods = c.Pods, c.Updated, c.Ready, c.InFlight, c.Failed
	st.OutdatedPods = c.Outdated

	wasHalted := halted(before.History, s.target)
	st.History = updateHistory(before.History, historyUpdate{
		target: s.target, cause: s.cause, source: s.source, now: s.now,
		complete: s.plan.Complete, failed: s.plan.Failure != nil, rolledBack: s.plan.RolledBack,
	}, historyLimit(s.pool))
	isHalted := halted(st.History, s.target)

	if s.target != "" {
		st.UpdateRevision = s.target
		if isHalted && s.pool.Spec.Strategy.Rollback == workersv1alpha1.RollbackAuto && before.CurrentRevision != "" {
			// New pods start at updateRevision: not the failed one.
			st.UpdateRevision = before.CurrentRevision
		}
	}
	if s.plan.Complete && s.target != "" {
		st.CurrentRevision = s.target
	}

	in := rolloutState{
		target: s.target, stable: st.CurrentRevision, accessWait: s.accessWait,
		paused: s.pool.Spec.Paused, halted: isHalted, rollback: s.pool.Spec.Strategy.Rollback,
		complete: s.plan.Complete, rolledBack: s.plan.RolledBack, counts: c,
		deadline: time.Duration(s.pool.Spec.Strategy.ProgressDeadlineSeconds) * time.Second,
		progressed: len(before.History) == 0 || before.History[0].Revision != s.target || c.Updated > before.UpdatedPods ||
			!wasHalted && isHalted || s.replace != nil && len(s.replace.evicted) > 0,
	}
	if s.blocked != nil {
		in.blocked = *s.blocked
	}
	if f := s.plan.Failure; f != nil {
		in.failure = fmt.Sprintf("pod %s failed to reload revision %s: %s", f.Pod, s.target, f.Message)
	}
	gen := s.pool.Generation
	in.replacing = setPodsOutdatedCondition(st, s.replace, s.pool.Name, gen, s.now)
	setAvailableCondition(&st.Conditions, c, gen, s.now)
	setProgressingCondition(&st.Conditions, in, gen, s.now)
	setDegradedCondition(&st.Conditions, in, gen, s.now)
}

// computeBlockedStatus records a problem found before the pods could be
// planned (s.blocked): the conditions say it; the counts, the history and
// Available stay as last written, since the pods were not looked at.
func computeBlockedStatus(s *scope) {
	st := &s.pool.Status
	st.ObservedGeneration = s.pool.Generation
	in := rolloutState{blocked: *s.blocked}
	setProgressingCondition(&st.Conditions, in, s.pool.Generation, s.now)
	setDegradedCondition(&st.Conditions, in, s.pool.Generation, s.now)
}

func historyLimit(pool *workersv1alpha1.WorkerPool) int {
	limit := 10
	if l := pool.Spec.RevisionHistoryLimit; l != nil {
		limit = int(*l)
	}
	// The current revision and the one before it, at least: a rollback needs
	// to know where it goes.
	return min(max(limit+1, 2), maxHistory)
}

// historyUpdate is what happened to the target revision in one reconcile.
type historyUpdate struct {
	target, cause, source        string
	now                          metav1.Time
	complete, failed, rolledBack bool
}

// updateHistory puts the target first, with its result once known, and
// trims the list to limit.
func updateHistory(history []workersv1alpha1.RevisionRecord, u historyUpdate, limit int) []workersv1alpha1.RevisionRecord {
	if u.target == "" {
		return history
	}
	out := make([]workersv1alpha1.RevisionRecord, 0, len(history)+1)
	for _, rec := range history {
		out = append(out, *rec.DeepCopy())
	}
	if len(out) == 0 || out[0].Revision != u.target {
		if len(out) > 0 && out[0].Result == "" {
			out[0].Result = ResultSuperseded
		}
		out = slices.DeleteFunc(out, func(rec workersv1alpha1.RevisionRecord) bool { return rec.Revision == u.target })
		out = slices.Insert(out, 0, workersv1alpha1.RevisionRecord{
			Revision: u.target, Cause: u.cause, Source: u.source, CreatedAt: u.now,
		})
	}
	head := &out[0]
	switch {
	case u.failed && head.Result == "":
		head.Result = ResultFailed
	case u.rolledBack && head.Result == ResultFailed:
		head.Result = ResultRolledBack
	case u.complete && head.Result == "":
		head.Result, head.CompletedAt = ResultComplete, u.now.DeepCopy()
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// rolloutState is what the Progressing and Degraded conditions depend on.
type rolloutState struct {
	target, stable string
	// blocked is why there is no target ("" target).
	blocked problem
	// accessWait says which pods wait for their agents' access.
	accessWait           string
	paused, halted       bool
	rollback             workersv1alpha1.RollbackPolicy
	complete, rolledBack bool
	counts               rollout.Counts
	// failure describes a failure seen in this reconcile, "" when none.
	failure string
	// replacing says how pods are being replaced, "" when none are.
	replacing string
	// progressed says the rollout moved on: a new target, one more pod
	// updated, or a failure recorded. It restarts the progress deadline.
	progressed bool
	deadline   time.Duration
}

// setAvailableCondition: True when every selected pod has all its workers
// ready.
func setAvailableCondition(conds *[]metav1.Condition, c rollout.Counts, gen int64, now metav1.Time) {
	cond := metav1.Condition{Type: workersv1alpha1.ConditionAvailable, ObservedGeneration: gen, LastTransitionTime: now}
	switch {
	case c.Pods == 0:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, workersv1alpha1.ReasonNoPods, "No pod is governed: none that the selector matches is labelled softreload.dev/pool with the pool's name"
	case c.Ready == c.Pods:
		cond.Status, cond.Reason = metav1.ConditionTrue, workersv1alpha1.ReasonAllPodsReady
		cond.Message = fmt.Sprintf("All %d pods have every worker ready", c.Pods)
	default:
		cond.Status, cond.Reason = metav1.ConditionFalse, workersv1alpha1.ReasonPodsNotReady
		cond.Message = fmt.Sprintf("%d of %d pods have every worker ready", c.Ready, c.Pods)
	}
	meta.SetStatusCondition(conds, cond)
}

// setProgressingCondition: True while a revision rolls out (or back). Its
// lastTransitionTime is also the time of the last progress, from which the
// progress deadline counts.
func setProgressingCondition(conds *[]metav1.Condition, in rolloutState, gen int64, now metav1.Time) {
	cond := metav1.Condition{Type: workersv1alpha1.ConditionProgressing, ObservedGeneration: gen, LastTransitionTime: now}
	autoRollback := in.rollback == workersv1alpha1.RollbackAuto && in.stable != "" && in.stable != in.target
	switch {
	case in.target == "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, in.blocked.reason, in.blocked.message
	case in.halted && autoRollback && in.rolledBack:
		cond.Status, cond.Reason = metav1.ConditionFalse, workersv1alpha1.ReasonRolledBack
		cond.Message = fmt.Sprintf("Rolled back to revision %s after revision %s failed", in.stable, in.target)
	case in.halted && autoRollback:
		cond.Status, cond.Reason = metav1.ConditionTrue, workersv1alpha1.ReasonRolledBack
		cond.Message = fmt.Sprintf("Rolling back to revision %s after revision %s failed", in.stable, in.target)
	case in.halted:
		cond.Status, cond.Reason = metav1.ConditionFalse, workersv1alpha1.ReasonReloadFailed
		cond.Message = fmt.Sprintf("Revision %s failed; the rollout holds until the code or the spec changes", in.target)
	case in.complete && in.replacing != "":
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, workersv1alpha1.ReasonReplacingPods, in.replacing
	case in.complete:
		cond.Status, cond.Reason = metav1.ConditionFalse, workersv1alpha1.ReasonRolloutComplete
		cond.Message = fmt.Sprintf("All %d pods run revision %s", in.counts.Pods, in.target)
		if in.counts.Outdated > 0 {
			cond.Message += fmt.Sprintf("; %d keep a group that is not reloadable at an older spec until they are replaced (PodsOutdated)", in.counts.Outdated)
		}
	case in.paused:
		cond.Status, cond.Reason = metav1.ConditionFalse, workersv1alpha1.ReasonRolloutPaused
		cond.Message = fmt.Sprintf("Paused with %d of %d pods on revision %s", in.counts.Updated, in.counts.Pods, in.target)
	case in.accessWait != "":
		cond.Status, cond.Reason = metav1.ConditionTrue, workersv1alpha1.ReasonWaitingForAgentAccess
		cond.Message = fmt.Sprintf("%d of %d pods run revision %s, %d reloading; %s", in.counts.Updated, in.counts.Pods, in.target, in.counts.InFlight, in.accessWait)
	default:
		cond.Status, cond.Reason = metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress
		cond.Message = fmt.Sprintf("%d of %d pods run revision %s, %d reloading", in.counts.Updated, in.counts.Pods, in.target, in.counts.InFlight)
	}
	meta.SetStatusCondition(conds, cond)
	if in.progressed && cond.Status == metav1.ConditionTrue {
		meta.FindStatusCondition(*conds, cond.Type).LastTransitionTime = now
	}
}

// setDegradedCondition: True when a revision failed, the code is missing or
// the rollout made no progress within its deadline. It reads the Progressing
// condition that setProgressingCondition wrote.
func setDegradedCondition(conds *[]metav1.Condition, in rolloutState, gen int64, now metav1.Time) {
	cond := metav1.Condition{Type: workersv1alpha1.ConditionDegraded, ObservedGeneration: gen, LastTransitionTime: now,
		Status: metav1.ConditionTrue}
	prev := meta.FindStatusCondition(*conds, workersv1alpha1.ConditionDegraded)
	progressing := meta.FindStatusCondition(*conds, workersv1alpha1.ConditionProgressing)
	switch {
	case in.failure != "":
		cond.Reason, cond.Message = workersv1alpha1.ReasonReloadFailed, in.failure
	case in.halted:
		cond.Reason, cond.Message = workersv1alpha1.ReasonReloadFailed, fmt.Sprintf("Revision %s failed", in.target)
		// Keep the first report, which names the pod and its message.
		if prev != nil && prev.Reason == workersv1alpha1.ReasonReloadFailed && prev.Status == metav1.ConditionTrue {
			cond.Message = prev.Message
		}
	case in.target == "":
		cond.Reason, cond.Message = in.blocked.reason, in.blocked.message
	case progressing != nil && progressing.Status == metav1.ConditionTrue && in.deadline > 0 &&
		now.Sub(progressing.LastTransitionTime.Time) >= in.deadline:
		cond.Reason = workersv1alpha1.ReasonProgressDeadlineExceeded
		cond.Message = fmt.Sprintf("The rollout of revision %s made no progress in %s; %d pods are still reloading", in.target, in.deadline, in.counts.InFlight)
	default:
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, workersv1alpha1.ReasonAsExpected, ""
	}
	meta.SetStatusCondition(conds, cond)
}

// deadlineLeft returns how long the rollout has left before its progress
// deadline, when it is progressing.
func deadlineLeft(pool *workersv1alpha1.WorkerPool, now time.Time) (time.Duration, bool) {
	c := meta.FindStatusCondition(pool.Status.Conditions, workersv1alpha1.ConditionProgressing)
	if c == nil || c.Status != metav1.ConditionTrue {
		return 0, false
	}
	deadline := time.Duration(pool.Spec.Strategy.ProgressDeadlineSeconds) * time.Second
	if deadline <= 0 {
		return 0, false
	}
	return c.LastTransitionTime.Add(deadline).Sub(now), true
}

func equalStatus(a, b workersv1alpha1.WorkerPoolStatus) bool {
	return equality.Semantic.DeepEqual(a, b)
}
