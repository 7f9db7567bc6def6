package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/internal/poolrevision"
)

// reconcileCode sets the target revision of a pool whose code is a
// ConfigMap. The ConfigMap's metadata comes from the code metadata cache;
// its files are read from the API server, and hashed, only when its UID or
// resourceVersion (or the revision spec) differ from those the remembered
// revision was made from, or its snapshot is missing. It returns the code
// when it read it, nil when the revision was remembered.
func (r *WorkerPoolReconciler) reconcileCode(ctx context.Context, s *scope) (*poolrevision.Code, error) {
	name := s.pool.Spec.Code.ConfigMapRef.Name
	key := types.NamespacedName{Namespace: s.pool.Namespace, Name: name}
	poolKey := client.ObjectKeyFromObject(s.pool)
	meta := configMapMetadata()
	if err := r.codeMeta.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			s.blocked = codeNotFound(name)
			return nil, nil
		}
		return nil, fmt.Errorf("getting code ConfigMap %s: %w", name, err)
	}
	if c, ok := r.mem.codeRevisionOf(poolKey, meta.UID, meta.ResourceVersion, s.spec); ok && r.hasSnapshot(ctx, s.pool.Namespace, s.pool.Name, c.target) {
		useCodeRevision(s, name, c)
		return nil, nil
	}

	cm := &corev1.ConfigMap{}
	if err := r.reader.Get(ctx, key, cm); err != nil {
		if apierrors.IsNotFound(err) {
			s.blocked = codeNotFound(name)
			return nil, nil
		}
		return nil, fmt.Errorf("reading code ConfigMap %s: %w", name, err)
	}
	code := poolrevision.CodeOf(cm)
	c := codeRevision{uid: cm.UID, resourceVersion: cm.ResourceVersion, spec: s.spec, size: codeSize(code)}
	if c.size <= maxSnapshotBytes {
		c.target = poolrevision.Hash(s.spec, code)
	}
	r.mem.rememberCode(poolKey, c)
	useCodeRevision(s, name, c)
	return &code, nil
}

// useCodeRevision makes c the scope's target, or records that the code is
// too large for a snapshot.
func useCodeRevision(s *scope, name string, c codeRevision) {
	if c.size > maxSnapshotBytes {
		s.blocked = codeTooLarge(name, c.size)
		return
	}
	s.target = c.target
	s.source = fmt.Sprintf("ConfigMap %s (resourceVersion %s)", name, c.resourceVersion)
}

// hasSnapshot says whether the cache holds the snapshot of rev.
func (r *WorkerPoolReconciler) hasSnapshot(ctx context.Context, namespace, pool, rev string) bool {
	cm := &corev1.ConfigMap{}
	return r.client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: poolrevision.SnapshotName(pool, rev)}, cm) == nil
}
