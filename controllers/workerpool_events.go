package controllers

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// Event reasons of a WorkerPool. Normal events tell of a rollout's start
// and end; Warning events of every problem the user must look at.
const (
	EventRolloutStarted           = "RolloutStarted"
	EventRolloutComplete          = "RolloutComplete"
	EventReloadFailed             = "ReloadFailed"
	EventRolledBack               = "RolledBack"
	EventProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	EventCodeSourceNotFound       = "CodeSourceNotFound"
	EventRollbackRefused          = "RollbackRefused"
	EventSnapshotNameTaken        = "SnapshotNameTaken"
	EventCodeTooLarge             = "CodeTooLarge"
	EventSnapshotNotCreated       = "SnapshotNotCreated"
	EventInvalidSelector          = "InvalidSelector"
	// EventRollbackPending: a rollback request waits, kept, until the
	// snapshot of its revision can be read.
	EventRollbackPending = "RollbackPending"
)

// degradedEvents are the Warning events told when the Degraded condition
// turns to a reason the user must act on; the event's note is the
// condition's message.
var degradedEvents = map[string]string{
	workersv1alpha1.ReasonProgressDeadlineExceeded: EventProgressDeadlineExceeded,
	workersv1alpha1.ReasonCodeSourceNotFound:       EventCodeSourceNotFound,
	workersv1alpha1.ReasonSnapshotNameTaken:        EventSnapshotNameTaken,
	workersv1alpha1.ReasonCodeTooLarge:             EventCodeTooLarge,
	workersv1alpha1.ReasonSnapshotNotCreated:       EventSnapshotNotCreated,
	workersv1alpha1.ReasonInvalidSelector:          EventInvalidSelector,
}

// Event actions (the events API's "what the controller did").
const (
	actionRollout  = "Rollout"
	actionRollback = "Rollback"
	actionObserve  = "Observe"
)

// announce emits the events and metrics of what changed from before to
// after, once the status that records it is written: a change is told once
// however often the reconcile runs.
func (r *WorkerPoolReconciler) announce(before, after *workersv1alpha1.WorkerPool, now time.Time) {
	var was workersv1alpha1.RevisionRecord
	if len(before.Status.History) > 0 {
		was = before.Status.History[0]
	}
	if h := after.Status.History; len(h) > 0 {
		head := h[0]
		if head.Revision != was.Revision {
			if was.Revision != "" && was.Result == "" {
				observeRollout(ResultSuperseded, was.CreatedAt.Time, now)
			}
			r.recorder.Eventf(after, nil, corev1.EventTypeNormal, EventRolloutStarted, actionRollout,
				"Rolling out revision %s (%s, %s) to %d pods", head.Revision, head.Cause, head.Source, after.Status.Pods)
			was = workersv1alpha1.RevisionRecord{}
		}
		if head.Result != was.Result {
			switch head.Result {
			case ResultComplete:
				r.recorder.Eventf(after, nil, corev1.EventTypeNormal, EventRolloutComplete, actionRollout,
					"Revision %s runs on all %d pods", head.Revision, after.Status.Pods)
			case ResultFailed:
				msg := degradedMessage(after)
				if after.Spec.Strategy.Rollback == workersv1alpha1.RollbackAuto && after.Status.CurrentRevision != "" {
					msg += "; rolling back to revision " + after.Status.CurrentRevision
				} else {
					msg += "; the rollout holds until the code or the spec changes"
				}
				r.recorder.Eventf(after, nil, corev1.EventTypeWarning, EventReloadFailed, actionRollout, "%s", msg)
			case ResultRolledBack:
				r.recorder.Eventf(after, nil, corev1.EventTypeWarning, EventRolledBack, actionRollback,
					"Rolled back to revision %s after revision %s failed", after.Status.CurrentRevision, head.Revision)
			}
			if head.Result != "" {
				observeRollout(head.Result, head.CreatedAt.Time, now)
			}
		}
	}

	r.announceOverlap(before, after)
	prev := meta.FindStatusCondition(before.Status.Conditions, workersv1alpha1.ConditionDegraded)
	cur := meta.FindStatusCondition(after.Status.Conditions, workersv1alpha1.ConditionDegraded)
	if cur != nil && (prev == nil || prev.Reason != cur.Reason) {
		if reason, ok := degradedEvents[cur.Reason]; ok && cur.Status == metav1.ConditionTrue {
			r.recorder.Eventf(after, nil, corev1.EventTypeWarning, reason, actionObserve, "%s", cur.Message)
		}
	}
}

func degradedMessage(pool *workersv1alpha1.WorkerPool) string {
	if c := meta.FindStatusCondition(pool.Status.Conditions, workersv1alpha1.ConditionDegraded); c != nil {
		return c.Message
	}
	return ""
}
