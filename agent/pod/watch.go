package pod

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// watchPod starts an informer on the pod itself that feeds each version of
// it to a.pods. It does not wait for the API server: the returned channel
// reports a pod that turns out not to exist.
func (a *Agent) watchPod(ctx context.Context) (<-chan error, error) {
	informer := cache.NewSharedIndexInformer(a.opts.Client.PodListWatch(a.opts.Namespace, a.opts.PodName), &corev1.Pod{}, 0, cache.Indexers{})
	onPod := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			replaceLatest(a.pods, pod)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watching pod %s/%s: %w", a.opts.Namespace, a.opts.PodName, err)
	}
	go informer.RunWithContext(ctx)
	a.log.Info("Waiting for the pod's annotations")
	missing := make(chan error, 1)
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			return
		}
		if _, ok, _ := informer.GetStore().GetByKey(a.opts.Namespace + "/" + a.opts.PodName); !ok {
			missing <- fmt.Errorf("pod %s/%s not found: POD_NAME and POD_NAMESPACE must name the agent's own pod", a.opts.Namespace, a.opts.PodName)
		}
	}()
	return missing, nil
}
