package chart

import (
	"context"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/internal/agentaccess"
	"github.com/softreload/softreload/internal/testing/suite"
)

// hookIDs are the objects of the post-install hook that waits until the
// API server calls the webhook.
var hookIDs = []string{
	"Job/softreload-webhook-check",
	"Role/softreload-webhook-check",
	"RoleBinding/softreload-webhook-check",
	"ServiceAccount/softreload-webhook-check",
}

// templateHooks renders the chart's hooks alone.
func templateHooks(values string) objects {
	GinkgoHelper()
	all, err := render(values)
	Expect(err).NotTo(HaveOccurred())
	installed := mustTemplate(values)
	return slices.DeleteFunc(all, func(o *unstructured.Unstructured) bool { return installed.has(o.GetKind(), o.GetName()) })
}

var _ = Describe("The webhook check hook", func() {
	// The hook runs after install and upgrade, its rights and account
	// before its Job, with the manager's image and the flag that waits for
	// the webhook; it can be turned off.
	It("runs after install and upgrade with the manager's image, waiting for the webhook", func() {
		hooks := templateHooks("")
		Expect(hooks.ids()).To(Equal(hookIDs), "hook objects")
		for _, o := range hooks {
			a := o.GetAnnotations()
			Expect(a).To(HaveKeyWithValue("helm.sh/hook", "post-install,post-upgrade"), "%s/%s runs at", o.GetKind(), o.GetName())
			wantWeight := "-1"
			if o.GetKind() == "Job" {
				wantWeight = "0"
			}
			Expect(a).To(HaveKeyWithValue("helm.sh/hook-weight", wantWeight), "%s/%s's hook weight (its rights before the Job)", o.GetKind(), o.GetName())
		}
		job := hooks.get("Job", "softreload-webhook-check")
		pod := field(job, "spec", "template", "spec").(map[string]any)
		Expect(pod).To(HaveKeyWithValue("serviceAccountName", "softreload-webhook-check"), "the Job's account")
		c := pod["containers"].([]any)[0].(map[string]any)
		installed := mustTemplate("")
		Expect(c["image"]).To(Equal(managerContainer(installed)["image"]), "the Job's image, the manager's")
		Expect(c["args"]).To(Equal([]any{"--wait-for-webhook=5m"}), "the Job's args")
		var env []string
		for _, e := range c["env"].([]any) {
			env = append(env, e.(map[string]any)["name"].(string))
		}
		Expect(env).To(Equal([]string{"POD_NAMESPACE", "POD_SERVICE_ACCOUNT"}), "the Job's environment")
	})

	It("can be turned off", func() {
		Expect(templateHooks("webhook:\n  installCheck:\n    enabled: false\n").ids()).To(BeEmpty(), "installCheck.enabled=false still renders hooks")
	})

	It("refuses a timeout that is no duration", func() {
		_, err := template("webhook:\n  installCheck:\n    timeout: soon\n")
		Expect(err).To(HaveOccurred(), "installCheck.timeout=soon was accepted")
	})

	// A real API server accepts the hook's objects, and its account may
	// create the probe pod (as a dry run) and nothing it does not need.
	Describe("on a real API server", Ordered, Label(suite.ControlPlane), func() {
		ctx := context.Background()
		BeforeAll(func() {
			for _, o := range templateHooks("") {
				err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
					client.ForceOwnership, client.FieldOwner("softreload-install-test"))
				Expect(err).NotTo(HaveOccurred(), "installing %s/%s", o.GetKind(), o.GetName())
			}
		})

		DescribeTable("has an account that may",
			func(access authorizationv1.ResourceAttributes, want bool) {
				review := agentaccess.ServiceAccountReview(namespace, "softreload-webhook-check", access)
				Expect(env.Client.Create(ctx, review)).To(Succeed())
				Expect(review.Status.Allowed).To(Equal(want), "the hook's account may %s pods in %q", access.Verb, access.Namespace)
			},
			Entry("create pods in its namespace", authorizationv1.ResourceAttributes{Namespace: namespace, Resource: "pods", Verb: "create"}, true),
			Entry("not create pods elsewhere", authorizationv1.ResourceAttributes{Namespace: "other", Resource: "pods", Verb: "create"}, false),
			Entry("not delete pods", authorizationv1.ResourceAttributes{Namespace: namespace, Resource: "pods", Verb: "delete"}, false),
		)
	})
})
