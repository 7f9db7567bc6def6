package chart

import (
	"context"
	"path/filepath"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/internal/testing/envtest"
)

// Groups whose CRDs the test control plane does not have: cert-manager's
// and the Prometheus Operator's. Their objects are checked by rendering
// only.
var notServed = map[string]bool{"cert-manager.io": true, "monitoring.coreos.com": true}

// A real kube-apiserver accepts every object of each install, and the
// default install gives the manager the rights its flags need.
func TestAPIServer(t *testing.T) {
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

	t.Run("accepts every install", func(t *testing.T) { acceptsEveryInstall(t, env) })
	t.Run("the manager may do what its flags need", func(t *testing.T) { managerRights(t, env) })
}

// acceptsEveryInstall server-side applies every object of each install as
// a dry run: nothing is stored, everything is validated and admitted, the
// CRD's schema and the admission policy's CEL included.
func acceptsEveryInstall(t *testing.T, env *envtest.Env) {
	ctx := context.Background()
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

// managerRights installs the chart's defaults for real and asks the API
// server's authorizer whether the manager's service account may do what
// the manager does with its default flags: a mistake in a binding's
// subject or role shows here, not at the first leader election in a
// cluster.
func managerRights(t *testing.T, env *envtest.Env) {
	ctx := context.Background()
	for _, o := range mustTemplate(t, "") {
		err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
			client.ForceOwnership, client.FieldOwner("softreload-install-test"))
		if err != nil {
			t.Fatalf("installing %s/%s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	type access = authorizationv1.ResourceAttributes
	tests := map[string][]access{
		"--leader-elect": {
			{Namespace: namespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"},
			{Namespace: namespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: "any"},
			{Namespace: namespace, Resource: "events", Verb: "create"},
		},
		"--webhook-cert-mode=self: the certificate Secret": {
			{Namespace: namespace, Resource: "secrets", Verb: "get", Name: "softreload-webhook-cert"},
			{Namespace: namespace, Resource: "secrets", Verb: "update", Name: "softreload-webhook-cert"},
			{Namespace: namespace, Resource: "secrets", Verb: "list"},
			{Namespace: namespace, Resource: "secrets", Verb: "watch"},
		},
		"--webhook-cert-mode=self: the CA bundle": {
			{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "list"},
			{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "watch"},
			{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "get", Name: "softreload-injector"},
			{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "update", Name: "softreload-injector"},
		},
		"the generated ClusterRole is bound": {
			{Group: "workers.softreload.dev", Resource: "workerpools", Verb: "watch"},
			{Namespace: "any-namespace", Resource: "pods", Verb: "patch", Name: "any"},
		},
	}
	user := "system:serviceaccount:" + namespace + ":softreload-manager"
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	for name, accesses := range tests {
		t.Run(name, func(t *testing.T) {
			for _, a := range accesses {
				review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
					User: user, Groups: groups, ResourceAttributes: &a,
				}}
				if err := env.Client.Create(ctx, review); err != nil {
					t.Fatal(err)
				}
				if !review.Status.Allowed {
					t.Errorf("the manager may not %s %s/%s %q in %q: %s", a.Verb, a.Group, a.Resource, a.Name, a.Namespace, review.Status.Reason)
				}
			}
		})
	}
}
