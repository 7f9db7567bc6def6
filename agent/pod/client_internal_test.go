package pod

import (
	"net/http"
	"net/http/httptest"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
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

var _ = Describe("The agent's client", func() {
	// Protobuf, as the kubelet reads the built-in kinds: the agent decodes
	// its pod and snapshots with their generated code, not by reflection.
	It("asks the API server for protobuf, and reads it", func(ctx SpecContext) {
		want := &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "web-r1", Namespace: "shop"},
			Data:       map[string]string{"app.py": "print('hi')"},
		}
		protobuf, ok := runtime.SerializerInfoForMediaType(serializer.NewCodecFactory(coreScheme()).SupportedMediaTypes(), runtime.ContentTypeProtobuf)
		Expect(ok).To(BeTrue(), "the agent's scheme has no protobuf serializer")
		accepts := make(chan string, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			accepts <- r.Header.Get("Accept")
			w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
			_ = protobuf.Serializer.Encode(want, w)
		}))
		DeferCleanup(srv.Close)

		c, err := NewClient(&rest.Config{Host: srv.URL})
		Expect(err).NotTo(HaveOccurred())
		got, err := c.GetConfigMap(ctx, "shop", "web-r1")
		Expect(err).NotTo(HaveOccurred())
		Expect(<-accepts).To(HavePrefix(runtime.ContentTypeProtobuf + ","))
		Expect(got.Data).To(Equal(want.Data))
	})
})
