package pod

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var _ = Describe("The agent's scheme", func() {
	// Every group it registered would be paid in every pod, and the agent
	// calls none.
	It("holds core/v1 alone", func() {
		kinds := coreScheme().AllKnownTypes()
		for gvk := range kinds {
			Expect(gvk.Group).To(BeEmpty(), "the agent's scheme registers %s; it needs core/v1 alone", gvk)
			Expect(gvk.Version).To(BeElementOf("v1", runtime.APIVersionInternal), "the agent's scheme registers %s; it needs core/v1 alone", gvk)
		}
		for _, kind := range []string{"Pod", "PodList", "ConfigMap", "Status", "WatchEvent"} {
			Expect(kinds).To(HaveKey(corev1.SchemeGroupVersion.WithKind(kind)), "the agent's scheme lacks %s, which the agent reads", kind)
		}
	})
})
