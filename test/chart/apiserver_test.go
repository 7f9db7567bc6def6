package chart

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/internal/testing/envtest"
)

// Groups whose CRDs the test control plane does not have: cert-manager's
// and the Prometheus Operator's. Their objects are checked by rendering
// only.
var notServed = map[string]bool{"cert-manager.io": true, "monitoring.coreos.com": true}

// A real kube-apiserver accepts every object of the install, as a
// server-side apply (dry run: nothing is stored, everything is validated
// and admitted, the CRD's schema and the admission policy's CEL included).
func TestAPIServerAcceptsTheInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	// Namespaced objects need their namespace to exist even in a dry run.
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}

	installs := map[string]objects{
		"chart defaults":       mustTemplate(t, ""),
		"chart custom":         mustTemplate(t, customValues),
		"chart cert-manager":   mustTemplate(t, certManagerValues),
		"kustomize default":    kustomize(t, filepath.Join(root, "config", "default")),
		"kustomize everything": kustomize(t, overlay(t, []string{"default", "prometheus"}, []string{"certmanager"})),
	}
	for name, objs := range installs {
		t.Run(name, func(t *testing.T) {
			applied := 0
			for _, o := range objs {
				if notServed[o.GroupVersionKind().Group] {
					continue
				}
				err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
					client.DryRunAll, client.ForceOwnership, client.FieldOwner("softreload-install-test"))
				if err != nil {
					t.Errorf("%s/%s: %v", o.GetKind(), o.GetName(), err)
				}
				applied++
			}
			if applied < len(defaultIDs)-len(selfCertIDs) {
				t.Errorf("only %d objects applied", applied)
			}
		})
	}
}
