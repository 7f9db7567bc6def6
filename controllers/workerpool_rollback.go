package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// A rollback that the user asks for (kubectl softreload rollback sets the
// pool's rollback-to annotation) makes a kept revision the target again.
// The request is recorded as the head of the history: cause Rollback, source
// "rollback from revision H", H being the revision the code and spec make.
// The annotation is then removed, and the target stays the rolled-back
// revision for as long as the code and spec still make H: it holds until
// they change.

func rollbackSource(from string) string { return "rollback from revision " + from }

// reconcileRollbackRequest turns the target into the revision of a pending
// or holding rollback.
func (r *WorkerPoolReconciler) reconcileRollbackRequest(ctx context.Context, s *scope) error {
	if s.target == "" {
		return nil // no code: nothing to compare a rollback with
	}
	computed := s.target
	to, requested := s.pool.Annotations[workersv1alpha1.RollbackToAnnotation]
	s.rollbackSeen = requested
	var head workersv1alpha1.RevisionRecord
	if h := s.pool.Status.History; len(h) > 0 {
		head = h[0]
	}
	holding := head.Cause == CauseRollback && head.Source == rollbackSource(computed)
	recorded := holding && head.Revision == to // the request is already the target
	backToCode := requested && to == computed  // the request ends a rollback
	switch {
	case requested && !backToCode && !recorded:
		spec, err := r.specOf(ctx, s.pool, to)
		switch {
		case apierrors.IsNotFound(err):
			r.recorder.Eventf(s.pool, nil, corev1.EventTypeWarning, EventRollbackRefused, actionRollback,
				"Cannot roll back to revision %s: no snapshot of it is kept", to)
			return nil
		case err != nil:
			// Kept: the request is retried until the snapshot can be read.
			s.rollbackSeen = false
			r.recorder.Eventf(s.pool, nil, corev1.EventTypeWarning, EventRollbackPending, actionRollback,
				"Cannot roll back to revision %s yet, the request stays and is retried: %v", to, err)
			return fmt.Errorf("rolling back to revision %s: %w", to, err)
		}
		s.target, s.spec, s.cause, s.source = to, spec, CauseRollback, rollbackSource(computed)
	case holding && !backToCode:
		spec, err := r.specOf(ctx, s.pool, head.Revision)
		if err != nil {
			return fmt.Errorf("holding the rollback to revision %s: %w", head.Revision, err)
		}
		s.target, s.spec, s.cause, s.source = head.Revision, spec, "", head.Source
	}
	return nil
}

// clearRollbackRequest removes the rollback-to annotation once the status
// records the request, unless the pool changed since it was read.
func (r *WorkerPoolReconciler) clearRollbackRequest(ctx context.Context, pool *workersv1alpha1.WorkerPool) error {
	base := pool.DeepCopy()
	cleared := pool.DeepCopy()
	delete(cleared.Annotations, workersv1alpha1.RollbackToAnnotation)
	if err := r.client.Patch(ctx, cleared, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("removing the %s annotation of WorkerPool %s: %w", workersv1alpha1.RollbackToAnnotation, pool.Name, err)
	}
	r.mem.wrote(cleared, base.ResourceVersion)
	return nil
}
