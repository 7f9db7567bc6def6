package pod

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The agent's scheme holds core/v1 and nothing else: every group it
// registered would be paid in every pod, and the agent calls none.
func TestTheAgentsSchemeHoldsCoreV1Alone(t *testing.T) {
	kinds := coreScheme().AllKnownTypes()
	for gvk := range kinds {
		if gvk.Group != "" || (gvk.Version != "v1" && gvk.Version != runtime.APIVersionInternal) {
			t.Errorf("the agent's scheme registers %s; it needs core/v1 alone", gvk)
		}
	}
	for _, kind := range []string{"Pod", "PodList", "ConfigMap", "Status", "WatchEvent"} {
		if _, ok := kinds[podGVK(kind)]; !ok {
			t.Errorf("the agent's scheme lacks %s, which the agent reads", kind)
		}
	}
}

func podGVK(kind string) schema.GroupVersionKind { return corev1.SchemeGroupVersion.WithKind(kind) }
