package chart

import (
	"context"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/internal/testing/envtest"
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
func templateHooks(t *testing.T, values string) objects {
	t.Helper()
	all, err := render(t, values)
	if err != nil {
		t.Fatal(err)
	}
	installed := mustTemplate(t, values)
	return slices.DeleteFunc(all, func(o *unstructured.Unstructured) bool { return installed.has(o.GetKind(), o.GetName()) })
}

// The hook runs after install and upgrade, its rights and account before
// its Job, with the manager's image and the flag that waits for the
// webhook; it can be turned off.
func TestWebhookCheckHook(t *testing.T) {
	hooks := templateHooks(t, "")
	if diff := cmp.Diff(hookIDs, hooks.ids()); diff != "" {
		t.Fatalf("hook objects (-want +got):\n%s", diff)
	}
	for _, o := range hooks {
		a := o.GetAnnotations()
		if a["helm.sh/hook"] != "post-install,post-upgrade" {
			t.Errorf("%s/%s runs at %q, want post-install,post-upgrade", o.GetKind(), o.GetName(), a["helm.sh/hook"])
		}
		wantWeight := "-1"
		if o.GetKind() == "Job" {
			wantWeight = "0"
		}
		if a["helm.sh/hook-weight"] != wantWeight {
			t.Errorf("%s/%s has hook weight %q, want %s (its rights before the Job)", o.GetKind(), o.GetName(), a["helm.sh/hook-weight"], wantWeight)
		}
	}
	job := hooks.get(t, "Job", "softreload-webhook-check")
	pod := field(t, job, "spec", "template", "spec").(map[string]any)
	if pod["serviceAccountName"] != "softreload-webhook-check" {
		t.Errorf("the Job runs as %v, want softreload-webhook-check", pod["serviceAccountName"])
	}
	c := pod["containers"].([]any)[0].(map[string]any)
	installed := mustTemplate(t, "")
	if want := managerContainer(t, installed)["image"]; c["image"] != want {
		t.Errorf("the Job runs image %v, want the manager's %v", c["image"], want)
	}
	if diff := cmp.Diff([]any{"--wait-for-webhook=5m"}, c["args"]); diff != "" {
		t.Errorf("the Job's args (-want +got):\n%s", diff)
	}
	var env []string
	for _, e := range c["env"].([]any) {
		env = append(env, e.(map[string]any)["name"].(string))
	}
	if diff := cmp.Diff([]string{"POD_NAMESPACE", "POD_SERVICE_ACCOUNT"}, env); diff != "" {
		t.Errorf("the Job's environment (-want +got):\n%s", diff)
	}

	if off := templateHooks(t, "webhook:\n  installCheck:\n    enabled: false\n"); len(off) > 0 {
		t.Errorf("installCheck.enabled=false still renders %v", off.ids())
	}
	if _, err := template(t, "webhook:\n  installCheck:\n    timeout: soon\n"); err == nil {
		t.Errorf("installCheck.timeout=soon was accepted")
	}
}

// A real API server accepts the hook's objects, and its account may create
// the probe pod (as a dry run) and nothing it does not need.
func TestWebhookCheckHookOnAPIServer(t *testing.T) {
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
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	for _, o := range templateHooks(t, "") {
		err := env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()),
			client.ForceOwnership, client.FieldOwner("softreload-install-test"))
		if err != nil {
			t.Fatalf("installing %s/%s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	user := "system:serviceaccount:" + namespace + ":softreload-webhook-check"
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	for _, tc := range []struct {
		access authorizationv1.ResourceAttributes
		want   bool
	}{
		{authorizationv1.ResourceAttributes{Namespace: namespace, Resource: "pods", Verb: "create"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "other", Resource: "pods", Verb: "create"}, false},
		{authorizationv1.ResourceAttributes{Namespace: namespace, Resource: "pods", Verb: "delete"}, false},
	} {
		review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: groups, ResourceAttributes: &tc.access,
		}}
		if err := env.Client.Create(ctx, review); err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed != tc.want {
			t.Errorf("the hook's account may %s pods in %q: %v, want %v", tc.access.Verb, tc.access.Namespace, review.Status.Allowed, tc.want)
		}
	}
}
