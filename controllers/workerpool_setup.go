package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
)

// CodeConfigMapIndex indexes WorkerPools by the name of their code
// ConfigMap, so that a ConfigMap edit reaches its pools at once.
const CodeConfigMapIndex = ".spec.code.configMapRef.name"

// PodPoolIndex indexes pods by their softreload.dev/pool label, so that a
// reconcile reads its pool's pods and not every pod of the namespace.
const PodPoolIndex = ".metadata.labels.softreload.dev/pool"

// poolWorkers is how many pools the controller reconciles at once: a pool
// whose reconcile waits on the API server holds one worker, not the others.
// One pool is never reconciled by two workers at once.
const poolWorkers = 8

// SetupWithManager registers the field index and the watches: WorkerPools
// (spec and annotation changes), their code ConfigMaps (metadata only, from
// a cache of their own) and snapshots, the pods they govern (creation,
// deletion, labels and the pod protocol's annotations), and the agents'
// Role and RoleBinding (pods wait for their agents' access to a revision
// before they are told it). The manager must run with CacheOptions.
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
	if err := indexPods(mgr); err != nil {
		return err
	}
	pods, err := newPoolPods(mgr, mgr.GetClient())
	if err != nil {
		return err
	}
	r.pods = pods
	codeMeta, err := newCodeMetadataCache(mgr)
	if err != nil {
		return err
	}
	r.codeMeta, r.reader = codeMeta, mgr.GetAPIReader()
	c := mgr.GetClient()
	return ctrl.ControllerManagedBy(mgr).
		Named("workerpool").
		WithOptions(controller.Options{MaxConcurrentReconciles: poolWorkers}).
		For(&workersv1alpha1.WorkerPool{}, ctrl.WithPredicates(
			predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.ConfigMap{}).
		WatchesRawSource(source.Kind(codeMeta, configMapMetadata(), handler.TypedEnqueueRequestsFromMapFunc(poolsReferencing(c)))).
		Watches(&corev1.Pod{}, poolOfPod, ctrl.WithPredicates(podChanged)).
		Watches(&rbacv1.Role{}, handler.EnqueueRequestsFromMapFunc(poolsInNamespace(c)), ctrl.WithPredicates(isAgentAccessObject)).
		Watches(&rbacv1.RoleBinding{}, handler.EnqueueRequestsFromMapFunc(poolsInNamespace(c)), ctrl.WithPredicates(isAgentAccessObject)).
		Complete(r)
}

// codeMetadataCache follows the metadata of every ConfigMap, a code
// ConfigMap being any ConfigMap a pool names: the manager's cache holds the
// snapshots alone. Each entry keeps only what tells a version from another
// (keepIdentity), so that a ConfigMap no pool uses costs its name, UID and
// resourceVersion and not its data; a pool's code is read from the API
// server when its ConfigMap's resourceVersion changes.
type codeMetadataCache struct{ cache.Cache }

// GetCache makes the manager start it with its own cache, before the
// controllers and whether or not it leads.
func (c codeMetadataCache) GetCache() cache.Cache { return c.Cache }

func newCodeMetadataCache(mgr manager.Manager) (cache.Cache, error) {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultTransform: keepIdentity,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the code ConfigMaps' metadata cache: %w", err)
	}
	if err := mgr.Add(codeMetadataCache{c}); err != nil {
		return nil, fmt.Errorf("adding the code ConfigMaps' metadata cache: %w", err)
	}
	return c, nil
}

// configMapMetadata is an empty ConfigMap's metadata, to get or watch
// ConfigMaps as metadata only.
func configMapMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	return m
}

// poolsReferencing maps a ConfigMap to the pools whose code it is.
func poolsReferencing(c client.Client) handler.TypedMapFunc[*metav1.PartialObjectMetadata, reconcile.Request] {
	return func(ctx context.Context, obj *metav1.PartialObjectMetadata) []reconcile.Request {
		pools := &workersv1alpha1.WorkerPoolList{}
		if err := c.List(ctx, pools, client.InNamespace(obj.GetNamespace()),
			client.MatchingFields{CodeConfigMapIndex: obj.GetName()}); err != nil {
			return nil
		}
		return requests(pools.Items, func(workersv1alpha1.WorkerPool) bool { return true })
	}
}

// poolOfPod maps a pod to the pool its softreload.dev/pool label names, the
// only pool that may govern it; a pod whose label changes, to both pools.
// (Listing the pools of the namespace for each pod event cost, with 50
// pools, 50 copies of a pool per agent report.)
var poolOfPod = handler.Funcs{
	CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueuePoolOf(q, e.Object)
	},
	UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueuePoolOf(q, e.ObjectNew)
		if e.ObjectOld.GetLabels()[workersv1alpha1.PoolLabel] != e.ObjectNew.GetLabels()[workersv1alpha1.PoolLabel] {
			enqueuePoolOf(q, e.ObjectOld)
		}
	},
	DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueuePoolOf(q, e.Object)
	},
	GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		enqueuePoolOf(q, e.Object)
	},
}

func enqueuePoolOf(q workqueue.TypedRateLimitingInterface[reconcile.Request], pod client.Object) {
	if name := pod.GetLabels()[workersv1alpha1.PoolLabel]; name != "" {
		q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: pod.GetNamespace(), Name: name}})
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
