package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
)

// The manager caches only what softreload governs, so that its memory grows
// with its pools and not with the cluster:
//
//   - Pods carrying the softreload.dev/pool label (the pods the injection
//     webhook put an agent into), trimmed to what the controllers read:
//     metadata, the service account, and the name and image of each
//     container.
//   - ConfigMaps carrying the softreload.dev/pool-name label (the revision
//     snapshots), without their files: the agents read those from the API
//     server; the manager reads a snapshot's labels and spec annotation.
//   - The agents' Role and RoleBinding (softreload-agent) alone.
//
// The users' code ConfigMaps are followed by a metadata-only watch of their
// own (see codeMetadataCache), and their files read from the API server
// when their resourceVersion changes.
//
// A read through the manager's cached client of an object outside these
// filters answers NotFound: whatever must see such an object (a ConfigMap in
// a snapshot's place) reads it through the manager's API reader.

// CacheOptions returns the cache options the manager must run the
// controllers with (ctrl.Options.Cache). Namespaces, a sync period and the
// like may be added to them.
func CacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:       {Label: hasLabel(workersv1alpha1.PoolLabel), Transform: trimPod},
			&corev1.ConfigMap{}: {Label: hasLabel(workersv1alpha1.PoolNameLabel), Transform: trimSnapshot},
			&rbacv1.Role{}:      {Field: fields.OneTermEqualSelector("metadata.name", agentaccess.Name)},
			&rbacv1.RoleBinding{}: {
				Field: fields.OneTermEqualSelector("metadata.name", agentaccess.Name),
			},
		},
	}
}

// hasLabel selects the objects that carry the label key, whatever its value.
func hasLabel(key string) labels.Selector {
	req, err := labels.NewRequirement(key, selection.Exists, nil)
	if err != nil {
		panic(err) // the keys are constants of the API
	}
	return labels.NewSelector().Add(*req)
}

// trimPod keeps of a pod what the controllers read.
var trimPod toolscache.TransformFunc = func(in any) (any, error) {
	pod, ok := in.(*corev1.Pod)
	if !ok {
		return in, nil
	}
	out := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: pod.ObjectMeta}
	out.ManagedFields = nil
	out.Spec.ServiceAccountName = pod.Spec.ServiceAccountName
	out.Spec.Containers = make([]corev1.Container, len(pod.Spec.Containers))
	for i, c := range pod.Spec.Containers {
		out.Spec.Containers[i] = corev1.Container{Name: c.Name, Image: c.Image}
	}
	return out, nil
}

// trimSnapshot keeps of a snapshot its metadata.
var trimSnapshot toolscache.TransformFunc = func(in any) (any, error) {
	cm, ok := in.(*corev1.ConfigMap)
	if !ok {
		return in, nil
	}
	out := &corev1.ConfigMap{TypeMeta: cm.TypeMeta, ObjectMeta: cm.ObjectMeta, Immutable: cm.Immutable}
	out.ManagedFields = nil
	return out, nil
}

// keepIdentity keeps of an object's metadata what tells one version from
// another: namespace, name, UID and resourceVersion (and deletion, for the
// watch's delete events).
var keepIdentity toolscache.TransformFunc = func(in any) (any, error) {
	m, ok := in.(*metav1.PartialObjectMetadata)
	if !ok {
		return in, nil
	}
	return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metav1.ObjectMeta{
		Namespace: m.Namespace, Name: m.Name, UID: m.UID, ResourceVersion: m.ResourceVersion,
		DeletionTimestamp: m.DeletionTimestamp,
	}}, nil
}

// podPoolIndexName is the name controller-runtime gives the index of
// PodPoolIndex in the pod informer (IndexField prefixes "field:"; its keys
// are namespace/value).
const podPoolIndexName = "field:" + PodPoolIndex

// indexPods indexes the manager's cached pods by their pool label
// (PodPoolIndex), which poolPods reads when the cache holds the pods of
// every namespace in one informer, as CacheOptions makes it (a cache of a
// few namespaces keeps one informer for each, and poolPods lists instead).
func indexPods(mgr manager.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.Pod{}, PodPoolIndex, func(obj client.Object) []string {
		if pool, ok := obj.GetLabels()[workersv1alpha1.PoolLabel]; ok {
			return []string{pool}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing pods by pool: %w", err)
	}
	return nil
}

// poolPods reads the cached pods labelled for a pool: the cache's own
// objects, to be read and never changed. It reads them from the pool index
// of the pod informer when the cache has it (indexPods): a List into a
// PodList copies every pod into the list even without a deep copy (1.2 KiB
// each, 6 MiB for each reconcile of a pool of 5,000 pods, a quarter of all
// the controller allocated in a rollout).
type poolPods struct {
	client client.Reader
	// index is the pod informer's indexer; nil, or without the pool
	// index, when the cache keeps an informer per namespace.
	index toolscache.Indexer
}

// newPoolPods reads through c, and through the index of the cache's pod
// informer when it has one.
func newPoolPods(mgr manager.Manager, c client.Reader) (poolPods, error) {
	inf, err := mgr.GetCache().GetInformer(context.Background(), &corev1.Pod{})
	if err != nil {
		return poolPods{}, fmt.Errorf("getting the pod informer: %w", err)
	}
	p := poolPods{client: c}
	if withIndexer, ok := inf.(interface{ GetIndexer() toolscache.Indexer }); ok {
		p.index = withIndexer.GetIndexer()
	}
	return p, nil
}

// get returns the pods of namespace ns labelled for pool that selector
// matches.
func (p poolPods) get(ctx context.Context, ns, pool string, selector labels.Selector) ([]*corev1.Pod, error) {
	if p.index != nil {
		if _, ok := p.index.GetIndexers()[podPoolIndexName]; ok {
			objs, err := p.index.ByIndex(podPoolIndexName, ns+"/"+pool)
			if err != nil {
				return nil, fmt.Errorf("reading the pod index: %w", err)
			}
			pods := make([]*corev1.Pod, 0, len(objs))
			for _, obj := range objs {
				if pod, ok := obj.(*corev1.Pod); ok && selector.Matches(labels.Set(pod.Labels)) {
					pods = append(pods, pod)
				}
			}
			return pods, nil
		}
	}
	labelled, err := labels.NewRequirement(workersv1alpha1.PoolLabel, selection.Equals, []string{pool})
	if err != nil {
		return nil, fmt.Errorf("selecting the pods labelled for pool %s: %w", pool, err)
	}
	list := &corev1.PodList{}
	if err := p.client.List(ctx, list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: selector.Add(*labelled)},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	return pods, nil
}
