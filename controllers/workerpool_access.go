package controllers

import (
	"context"
	"fmt"
	"slices"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/rollout"
)

// A pod is told a revision only once its agent may read that revision's
// snapshot. The agent-access controller names each new snapshot in the
// namespace's agent Role a moment after the snapshot is made; telling the
// pods before would have their agents refused. The WorkerPool controller
// asks the API server's own authorizer (a SubjectAccessReview for the pod's
// service account), so that what it checks is what the agent will meet, and
// waits for the Role to change (it watches it) while the pods hold.

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch

// accessRetry is how soon a pool whose pods wait for their agents' access
// is reconciled again, should the Role's change have reached the
// authorizer after it reached the watch.
const accessRetry = 500 * time.Millisecond

// accessGrace is how long a pool waits for the agents' Role to name a new
// revision's snapshot before it asks the authorizer all the same (the
// agents may read it through a grant of the user's own).
const accessGrace = 2 * time.Second

// accessKey is one service account reading one revision's snapshot.
type accessKey struct{ serviceAccount, revision string }

// readableActions returns the plan's actions whose pod's agent may read the
// snapshot of the revision it is to be told, and records in s.accessWait
// what the others wait for.
func (r *WorkerPoolReconciler) readableActions(ctx context.Context, s *scope) ([]rollout.Action, error) {
	if len(s.plan.Actions) == 0 {
		return nil, nil
	}
	// The authorizer's yes is remembered while the Role and RoleBinding are
	// the same objects; a no is asked again. The agent-access controller
	// only adds to them while a revision rolls: it removes a snapshot once
	// pruned, a service account once no pod runs as it.
	version, role, err := r.accessVersion(ctx, s.pool.Namespace)
	if err != nil {
		return nil, err
	}
	poolKey := client.ObjectKeyFromObject(s.pool)
	allowed := map[accessKey]bool{}
	out := make([]rollout.Action, 0, len(s.plan.Actions))
	for _, a := range s.plan.Actions {
		key := accessKey{agentaccess.ServiceAccountOf(s.pods[a.Pod].Spec.ServiceAccountName), a.Revision}
		ok, known := allowed[key]
		if !known {
			if ok = r.mem.mayRead(poolKey, version, key); !ok && worthAsking(s, role, key) {
				if ok, err = r.mayRead(ctx, s.pool, key); err != nil {
					return nil, err
				}
				if ok {
					r.mem.allowRead(poolKey, version, key)
				}
			}
			allowed[key] = ok
		}
		if ok {
			out = append(out, a)
			continue
		}
		if s.accessWait == "" {
			s.accessWait = accessWaitMessage(s.pool.Name, key, a.Pod)
		}
	}
	return out, nil
}

// worthAsking says whether to ask the authorizer whether key may read its
// snapshot: once the agents' Role in the cache names the snapshot, or once
// the revision is older than accessGrace. A new revision's snapshot is
// named a moment after it is made, and the Role's change wakes the pool;
// asking before cost one review per new revision, whose answer was no.
func worthAsking(s *scope, role *rbacv1.Role, key accessKey) bool {
	snapshot := poolrevision.SnapshotName(s.pool.Name, key.revision)
	for _, rule := range role.Rules {
		if slices.Contains(rule.Resources, "configmaps") && slices.Contains(rule.ResourceNames, snapshot) {
			return true
		}
	}
	for _, rec := range s.pool.Status.History {
		if rec.Revision == key.revision {
			return s.now.Sub(rec.CreatedAt.Time) >= accessGrace
		}
	}
	return false // made by this reconcile
}

func accessWaitMessage(pool string, key accessKey, pod string) string {
	return fmt.Sprintf("pod %s waits to be told revision %s until service account %s may read its snapshot %s (Role %s, kept by the manager)",
		pod, key.revision, key.serviceAccount, poolrevision.SnapshotName(pool, key.revision), agentaccess.Name)
}

// accessVersion names the namespace's agent Role and RoleBinding in the
// cache by their UIDs ("" for one that does not exist): a yes holds until
// either is made anew. It returns the Role too (empty if there is none).
func (r *WorkerPoolReconciler) accessVersion(ctx context.Context, ns string) (string, *rbacv1.Role, error) {
	versions, role := "", &rbacv1.Role{}
	for _, obj := range []client.Object{role, &rbacv1.RoleBinding{}} {
		err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: agentaccess.Name}, obj)
		if client.IgnoreNotFound(err) != nil {
			return "", nil, fmt.Errorf("reading %T %s/%s: %w", obj, ns, agentaccess.Name, err)
		}
		versions += string(obj.GetUID()) + ";"
	}
	return versions, role, nil
}

// mayRead asks the API server whether the agents running as key's service
// account may get the snapshot of key's revision.
func (r *WorkerPoolReconciler) mayRead(ctx context.Context, pool *workersv1alpha1.WorkerPool, key accessKey) (bool, error) {
	ns, snapshot := pool.Namespace, poolrevision.SnapshotName(pool.Name, key.revision)
	review := agentaccess.ServiceAccountReview(ns, key.serviceAccount, authorizationv1.ResourceAttributes{
		Namespace: ns, Verb: "get", Resource: "configmaps", Name: snapshot,
	})
	if err := r.client.Create(ctx, review); err != nil {
		return false, fmt.Errorf("asking whether service account %s may read snapshot %s: %w", key.serviceAccount, snapshot, err)
	}
	return review.Status.Allowed, nil
}

// poolsInNamespace maps an object to every pool of its namespace: the agent
// Role and RoleBinding concern them all.
func poolsInNamespace(c client.Client) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		pools := &workersv1alpha1.WorkerPoolList{}
		if err := c.List(ctx, pools, client.InNamespace(obj.GetNamespace())); err != nil {
			return nil
		}
		return requests(pools.Items, func(workersv1alpha1.WorkerPool) bool { return true })
	}
}
