package chart

import (
	"context"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/internal/agentaccess"
	"github.com/softreload/softreload/internal/testing/suite"
)

// Groups whose CRDs the test control plane does not have: cert-manager's
// and the Prometheus Operator's. Their objects are checked by rendering
// only.
var notServed = map[string]bool{"cert-manager.io": true, "monitoring.coreos.com": true}

// A real kube-apiserver accepts every object of each install, and the
// default install gives the manager the rights its flags need.
var _ = Describe("A real API server", Label(suite.ControlPlane), func() {
	ctx := context.Background()

	// Every object of each install, server-side applied as a dry run:
	// nothing is stored, everything is validated and admitted, the CRD's
	// schema and the admission policy's CEL included.
	DescribeTable("accepts every install",
		func(install func() objects) {
			applied := 0
			for _, o := range install() {
				if notServed[o.GroupVersionKind().Group] {
					continue
				}
				err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
					client.DryRunAll, client.ForceOwnership, client.FieldOwner("softreload-install-test"))
				Expect(err).NotTo(HaveOccurred(), "%s/%s", o.GetKind(), o.GetName())
				applied++
			}
			Expect(applied).To(BeNumerically(">=", len(defaultIDs)-len(selfCertIDs)), "objects applied")
		},
		Entry("chart defaults", func() objects { return mustTemplate("") }),
		Entry("chart custom", func() objects { return mustTemplate(customValues) }),
		Entry("chart cert-manager", func() objects { return mustTemplate(certManagerValues) }),
		Entry("kustomize default", func() objects { return kustomize(filepath.Join(root, "config", "default")) }),
		Entry("kustomize everything", func() objects {
			return kustomize(overlay([]string{"default", "prometheus"}, []string{"certmanager"}))
		}),
	)

	// The chart's defaults installed for real, and the API server's
	// authorizer asked whether the manager's service account may do what
	// the manager does with its default flags: a mistake in a binding's
	// subject or role shows here, not at the first leader election in a
	// cluster.
	Describe("lets the manager do what its flags need", Ordered, func() {
		BeforeAll(func() {
			for _, o := range mustTemplate("") {
				err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
					client.ForceOwnership, client.FieldOwner("softreload-install-test"))
				Expect(err).NotTo(HaveOccurred(), "installing %s/%s", o.GetKind(), o.GetName())
			}
		})

		type access = authorizationv1.ResourceAttributes
		DescribeTable("for",
			func(accesses []access) {
				for _, a := range accesses {
					review := agentaccess.ServiceAccountReview(namespace, "softreload-manager", a)
					Expect(env.Client.Create(ctx, review)).To(Succeed())
					Expect(review.Status.Allowed).To(BeTrue(), "the manager may not %s %s/%s %q in %q: %s", a.Verb, a.Group, a.Resource, a.Name, a.Namespace, review.Status.Reason)
				}
			},
			Entry("--leader-elect", []access{
				{Namespace: namespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"},
				{Namespace: namespace, Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: "any"},
				{Namespace: namespace, Resource: "events", Verb: "create"},
			}),
			Entry("--webhook-cert-mode=self: the certificate Secret", []access{
				{Namespace: namespace, Resource: "secrets", Verb: "get", Name: "softreload-webhook-cert"},
				{Namespace: namespace, Resource: "secrets", Verb: "update", Name: "softreload-webhook-cert"},
				{Namespace: namespace, Resource: "secrets", Verb: "list"},
				{Namespace: namespace, Resource: "secrets", Verb: "watch"},
			}),
			Entry("--webhook-cert-mode=self: the CA bundle", []access{
				{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "list"},
				{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "watch"},
				{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "get", Name: "softreload-injector"},
				{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Verb: "update", Name: "softreload-injector"},
			}),
			Entry("the generated ClusterRole is bound", []access{
				{Group: "workers.softreload.dev", Resource: "workerpools", Verb: "watch"},
				{Namespace: "any-namespace", Resource: "pods", Verb: "patch", Name: "any"},
			}),
		)
	})
})
