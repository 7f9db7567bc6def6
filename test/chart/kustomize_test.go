package chart

import (
	"path/filepath"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

var _ = Describe("kustomize", func() {
	It("installs config/default's objects, each in its namespace, into a restricted namespace", func() {
		objs := kustomize(filepath.Join(root, "config", "default"))
		Expect(objs.ids()).To(Equal(edit(defaultIDs, nil, []string{"Namespace/softreload-system"})), "kubectl kustomize config/default")
		for _, o := range objs {
			switch o.GetKind() {
			case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
				"MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
				Expect(o.GetNamespace()).To(BeEmpty(), "cluster-scoped %s/%s has a namespace", o.GetKind(), o.GetName())
			default:
				Expect(o.GetNamespace()).To(Equal(namespace), "%s/%s's namespace", o.GetKind(), o.GetName())
			}
		}
		// The namespace enforces what the manager's pod is built to pass.
		ns := objs.get("Namespace", namespace)
		Expect(ns.GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"), "namespace pod-security enforce")
	})

	// The chart and kustomize install the same objects, but for the labels
	// each tool adds, with the default values and with cert-manager and
	// Prometheus.
	DescribeTable("agrees with the chart",
		func(resources, components []string, values string, wantIDs []string) {
			k := kustomize(overlay(resources, components))
			Expect(k.ids()).To(Equal(wantIDs), "kustomize objects")
			h := mustTemplate(values)
			Expect(h.ids()).To(Equal(slices.DeleteFunc(k.ids(), func(id string) bool { return id == "Namespace/softreload-system" })),
				"objects of the chart, against kustomize's")
			for _, ho := range h {
				if !k.has(ho.GetKind(), ho.GetName()) {
					continue
				}
				ko := k.get(ho.GetKind(), ho.GetName())
				Expect(withoutLabels(ho)).To(BeComparableTo(withoutLabels(ko)), "%s/%s of the chart, against kustomize's", ho.GetKind(), ho.GetName())
			}
		},
		Entry("defaults", []string{"default"}, nil, "", edit(defaultIDs, nil, []string{"Namespace/softreload-system"})),
		Entry("cert-manager and Prometheus", []string{"default", "prometheus"}, []string{"certmanager"},
			"webhook:\n  certMode: cert-manager\nmetrics:\n  serviceMonitor:\n    enabled: true\n",
			edit(defaultIDs, selfCertIDs, []string{
				"Namespace/softreload-system", "Issuer/softreload-selfsigned",
				"Certificate/softreload-serving-cert", "ServiceMonitor/softreload-manager-metrics",
			})),
	)
})

// withoutLabels is o without its own labels: helm and kustomize each add
// their own. The pod template's labels stay: they are the selector.
func withoutLabels(o *unstructured.Unstructured) map[string]any {
	c := o.DeepCopy()
	c.SetLabels(nil)
	return c.Object
}
