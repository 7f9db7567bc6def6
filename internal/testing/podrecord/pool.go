package podrecord

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// DescribePool tells a pool's status in a few lines, for a failure: its
// generations, revisions, pod counts and conditions.
func DescribePool(pool *v1alpha1.WorkerPool) string {
	var b strings.Builder
	s := pool.Status
	fmt.Fprintf(&b, "pool: generation %d observed %d, current %q update %q, pods %d updated %d ready %d reloading %d failed %d\n",
		pool.Generation, s.ObservedGeneration, s.CurrentRevision, s.UpdateRevision, s.Pods, s.UpdatedPods, s.ReadyPods, s.ReloadingPods, s.FailedPods)
	for _, c := range s.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

// Snapshots lists the revision snapshots of the pool named pool in
// namespace: each ConfigMap's name and the revision it holds.
func Snapshots(ctx context.Context, c client.Reader, namespace, pool string) (map[string]string, error) {
	list := &corev1.ConfigMapList{}
	if err := c.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{v1alpha1.PoolNameLabel: pool}); err != nil {
		return nil, fmt.Errorf("listing the revision snapshots of pool %s/%s: %w", namespace, pool, err)
	}
	out := make(map[string]string, len(list.Items))
	for _, cm := range list.Items {
		out[cm.Name] = cm.Labels[v1alpha1.RevisionLabel]
	}
	return out, nil
}
