package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
)

// CodeConfigMapIndex indexes WorkerPools by the name of their code
// ConfigMap, so that a ConfigMap edit reaches its pools at once.
const CodeConfigMapIndex = ".spec.code.configMapRef.name"

// SetupWithManager registers the field index and the watches: WorkerPools
// (spec and annotation changes), their code ConfigMaps and snapshots, and
// the pods they select (creation, deletion, labels and the pod protocol's
// annotations), and the agents' Role and RoleBinding (pods wait for their
// agents' access to a revision before they are told it).
func (r *WorkerPoolReconciler) SetupWithManager(mgr manager.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &workersv1alpha1.WorkerPool{}, CodeConfigMapIndex,
		func(obj client.Object) []string {
			if ref := obj.(*workersv1alpha1.WorkerPool).Spec.Code.ConfigMapRef; ref != nil {
				return []string{ref.Name}
			}
			return nil
		}); err != nil {
		return fmt.Errorf("indexing WorkerPools by code ConfigMap: %w", err)
	}
	c := mgr.GetClient()
	return ctrl.ControllerManagedBy(mgr).
		Named("workerpool").
		For(&workersv1alpha1.WorkerPool{}, ctrl.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.ConfigMap{}).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(poolsReferencing(c))).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(poolsSelecting(c)), ctrl.WithPredicates(podChanged)).
		Watches(&rbacv1.Role{}, handler.EnqueueRequestsFromMapFunc(poolsInNamespace(c)), ctrl.WithPredicates(isAgentAccessObject)).
		Watches(&rbacv1.RoleBinding{}, handler.EnqueueRequestsFromMapFunc(poolsInNamespace(c)), ctrl.WithPredicates(isAgentAccessObject)).
		Complete(r)
}

// poolsReferencing maps a ConfigMap to the pools whose code it is.
func poolsReferencing(c client.Client) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		pools := &workersv1alpha1.WorkerPoolList{}
		if err := c.List(ctx, pools, client.InNamespace(obj.GetNamespace()),
			client.MatchingFields{CodeConfigMapIndex: obj.GetName()}); err != nil {
			return nil
		}
		return requests(pools.Items, func(workersv1alpha1.WorkerPool) bool { return true })
	}
}

// poolsSelecting maps a pod to the pools whose selector matches it.
func poolsSelecting(c client.Client) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		pools := &workersv1alpha1.WorkerPoolList{}
		if err := c.List(ctx, pools, client.InNamespace(obj.GetNamespace())); err != nil {
			return nil
		}
		podLabels := labels.Set(obj.GetLabels())
		return requests(pools.Items, func(p workersv1alpha1.WorkerPool) bool {
			sel, err := metav1.LabelSelectorAsSelector(&p.Spec.Selector)
			return err == nil && sel.Matches(podLabels)
		})
	}
}

func requests(pools []workersv1alpha1.WorkerPool, keep func(workersv1alpha1.WorkerPool) bool) []reconcile.Request {
	var out []reconcile.Request
	for _, p := range pools {
		if keep(p) {
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}})
		}
	}
	return out
}

// podChanged lets through what the rollout depends on: pods coming and
// going, their labels, the pod protocol's annotations, and deletion starting.
var podChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		return !labels.Equals(o.GetLabels(), n.GetLabels()) ||
			o.GetAnnotations()[workersv1alpha1.StatusAnnotation] != n.GetAnnotations()[workersv1alpha1.StatusAnnotation] ||
			o.GetAnnotations()[workersv1alpha1.DesiredRevisionAnnotation] != n.GetAnnotations()[workersv1alpha1.DesiredRevisionAnnotation] ||
			o.GetDeletionTimestamp().IsZero() != n.GetDeletionTimestamp().IsZero()
	},
}

// isAgentAccessObject lets through the agents' Role and RoleBinding.
var isAgentAccessObject = predicate.NewPredicateFuncs(func(obj client.Object) bool {
	return obj.GetName() == agentaccess.Name
})
