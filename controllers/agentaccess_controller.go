package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
)

// AgentAccessReconciler keeps the agents' Role and RoleBinding of each
// namespace in step with the governed pods' service accounts and the pools'
// revision snapshots. Its requests name a namespace.
type AgentAccessReconciler struct {
	client client.Client
	// pods reads a pool's cached pods (SetupWithManager sets its index
	// when the cache has one).
	pods poolPods
}

var _ reconcile.Reconciler = (*AgentAccessReconciler)(nil)

// NewAgentAccessReconciler returns a reconciler that works through c.
func NewAgentAccessReconciler(c client.Client) *AgentAccessReconciler {
	return &AgentAccessReconciler{client: c, pods: poolPods{client: c}}
}

// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=workers.softreload.dev,resources=workerpools,verbs=get;list;watch

// Reconcile makes the namespace's softreload-agent Role and RoleBinding what
// agentaccess.Desired says, and removes them when no pod is governed.
func (r *AgentAccessReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ns := req.Name
	accounts, pods, err := r.governed(ctx, ns)
	if err != nil {
		return ctrl.Result{}, err
	}
	snapshots := &corev1.ConfigMapList{}
	if err := r.client.List(ctx, snapshots, client.InNamespace(ns), client.HasLabels{workersv1alpha1.PoolNameLabel}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing revision snapshots in %s: %w", ns, err)
	}
	names := make([]string, 0, len(snapshots.Items))
	for _, cm := range snapshots.Items {
		names = append(names, cm.Name)
	}

	role, binding := agentaccess.Desired(ns, accounts, pods, names)
	if role == nil {
		return ctrl.Result{}, r.remove(ctx, ns)
	}
	if err := r.apply(ctx, role, func(existing client.Object) { existing.(*rbacv1.Role).Rules = role.Rules }); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.apply(ctx, binding, func(existing client.Object) {
		existing.(*rbacv1.RoleBinding).RoleRef = binding.RoleRef
		existing.(*rbacv1.RoleBinding).Subjects = binding.Subjects
	})
}

// governed returns the pods that the pools of namespace ns govern, and their
// service accounts: each pool's own pods, from the cache's pool index.
func (r *AgentAccessReconciler) governed(ctx context.Context, ns string) (accounts, pods []string, err error) {
	pools := &workersv1alpha1.WorkerPoolList{}
	if err := r.client.List(ctx, pools, client.InNamespace(ns)); err != nil {
		return nil, nil, fmt.Errorf("listing WorkerPools in %s: %w", ns, err)
	}
	for _, pool := range pools.Items {
		selector, err := metav1.LabelSelectorAsSelector(&pool.Spec.Selector)
		if err != nil {
			// The pool's own reconciler reports a bad selector.
			continue
		}
		governed, err := r.pods.get(ctx, ns, pool.Name, selector)
		if err != nil {
			return nil, nil, fmt.Errorf("listing the pods of WorkerPool %s/%s: %w", ns, pool.Name, err)
		}
		for _, pod := range governed {
			accounts = append(accounts, agentaccess.ServiceAccountOf(pod.Spec.ServiceAccountName))
			pods = append(pods, pod.Name)
		}
	}
	return accounts, pods, nil
}

// apply creates obj, or sets its desired fields on the existing object.
func (r *AgentAccessReconciler) apply(ctx context.Context, obj client.Object, set func(existing client.Object)) error {
	existing := obj.DeepCopyObject().(client.Object)
	_, err := controllerutil.CreateOrUpdate(ctx, r.client, existing, func() error {
		set(existing)
		labels := existing.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[agentaccess.ManagedByLabel] = agentaccess.ManagedBy
		existing.SetLabels(labels)
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// remove deletes the namespace's agent Role and RoleBinding, if softreload
// made them.
func (r *AgentAccessReconciler) remove(ctx context.Context, ns string) error {
	for _, obj := range []client.Object{&rbacv1.RoleBinding{}, &rbacv1.Role{}} {
		err := r.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: agentaccess.Name}, obj)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading %T %s/%s: %w", obj, ns, agentaccess.Name, err)
		}
		if obj.GetLabels()[agentaccess.ManagedByLabel] != agentaccess.ManagedBy {
			continue
		}
		if err := r.client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting %T %s/%s: %w", obj, ns, agentaccess.Name, err)
		}
	}
	return nil
}

// SetupWithManager watches what the agents' rights depend on, each event
// naming its namespace. A pool's pods are read from the pod informer's pool
// index when the WorkerPool reconciler has set it up in the same manager
// (as the manager does), and listed otherwise.
func (r *AgentAccessReconciler) SetupWithManager(mgr ctrl.Manager) error {
	pods, err := newPoolPods(mgr, r.client)
	if err != nil {
		return err
	}
	r.pods = pods
	byNamespace := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: obj.GetNamespace()}}}
	})
	isAgentObject := predicate.NewPredicateFuncs(func(obj client.Object) bool { return obj.GetName() == agentaccess.Name })
	isSnapshot := predicate.NewPredicateFuncs(func(obj client.Object) bool {
		_, ok := obj.GetLabels()[workersv1alpha1.PoolNameLabel]
		return ok
	})
	// A pod matters when it appears, goes, or changes its labels; its
	// service account cannot change.
	podMatters := predicate.Or(predicate.LabelChangedPredicate{}, predicate.Funcs{
		UpdateFunc: func(event.UpdateEvent) bool { return false },
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("agentaccess").
		Watches(&workersv1alpha1.WorkerPool{}, byNamespace, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Pod{}, byNamespace, builder.WithPredicates(podMatters)).
		Watches(&corev1.ConfigMap{}, byNamespace, builder.WithPredicates(isSnapshot)).
		Watches(&rbacv1.Role{}, byNamespace, builder.WithPredicates(isAgentObject)).
		Watches(&rbacv1.RoleBinding{}, byNamespace, builder.WithPredicates(isAgentObject)).
		Complete(r)
}
