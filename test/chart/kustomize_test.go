package chart

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestKustomizeDefault(t *testing.T) {
	objs := kustomize(t, filepath.Join(root, "config", "default"))
	want := edit(defaultIDs, nil, []string{"Namespace/softreload-system"})
	if diff := cmp.Diff(want, objs.ids()); diff != "" {
		t.Errorf("kubectl kustomize config/default (-want +got):\n%s", diff)
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
			"MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			if o.GetNamespace() != "" {
				t.Errorf("cluster-scoped %s/%s has namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
			}
		default:
			if o.GetNamespace() != namespace {
				t.Errorf("%s/%s is in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), namespace)
			}
		}
	}
	// The namespace enforces what the manager's pod is built to pass.
	ns := objs.get(t, "Namespace", namespace)
	if got := ns.GetLabels()["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace pod-security enforce = %q, want restricted", got)
	}
}

// The chart and kustomize install the same objects, but for the labels
// each tool adds, with the default values and with cert-manager and
// Prometheus.
func TestKustomizeAgreesWithChart(t *testing.T) {
	tests := map[string]struct {
		resources, components []string
		values                string
		wantIDs               []string
	}{
		"defaults": {
			resources: []string{"default"},
			wantIDs:   edit(defaultIDs, nil, []string{"Namespace/softreload-system"}),
		},
		"cert-manager and Prometheus": {
			resources:  []string{"default", "prometheus"},
			components: []string{"certmanager"},
			values:     "webhook:\n  certMode: cert-manager\nmetrics:\n  serviceMonitor:\n    enabled: true\n",
			wantIDs: edit(defaultIDs, selfCertIDs, []string{
				"Namespace/softreload-system", "Issuer/softreload-selfsigned",
				"Certificate/softreload-serving-cert", "ServiceMonitor/softreload-manager-metrics",
			}),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			k := kustomize(t, overlay(t, tc.resources, tc.components))
			if diff := cmp.Diff(tc.wantIDs, k.ids()); diff != "" {
				t.Errorf("kustomize objects (-want +got):\n%s", diff)
			}
			h := mustTemplate(t, tc.values)
			if diff := cmp.Diff(slices.DeleteFunc(k.ids(), func(id string) bool { return id == "Namespace/softreload-system" }), h.ids()); diff != "" {
				t.Errorf("objects of kustomize (-) and the chart (+):\n%s", diff)
			}
			for _, ho := range h {
				if !k.has(ho.GetKind(), ho.GetName()) {
					continue
				}
				ko := k.get(t, ho.GetKind(), ho.GetName())
				if diff := cmp.Diff(withoutLabels(ko), withoutLabels(ho)); diff != "" {
					t.Errorf("%s/%s of kustomize (-) and the chart (+):\n%s", ho.GetKind(), ho.GetName(), diff)
				}
			}
		})
	}
}

// withoutLabels is o without its own labels: helm and kustomize each add
// their own. The pod template's labels stay: they are the selector.
func withoutLabels(o *unstructured.Unstructured) map[string]any {
	c := o.DeepCopy()
	c.SetLabels(nil)
	return c.Object
}
