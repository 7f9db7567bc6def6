package agentaccess_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
	"github.com/softreload/softreload/internal/testing/envtest"
)

func TestDesired(t *testing.T) {
	cases := map[string]struct {
		accounts, pods, snapshots []string
		wantRules                 []rbacv1.PolicyRule
		wantSubjects              []string
	}{
		"no governed pods grant nothing": {
			accounts: nil, pods: nil, snapshots: []string{"web-rev-1"},
		},
		"accounts are sorted and deduplicated, pods and snapshots named one by one": {
			accounts: []string{"web", "", "api", "web"}, pods: []string{"web-2", "api-1", "web-1"},
			snapshots: []string{"web-rev-2", "web-rev-1", "web-rev-2"},
			wantRules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}, ResourceNames: []string{"api-1", "web-1", "web-2"}},
				{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{"web-rev-1", "web-rev-2"}},
			},
			wantSubjects: []string{"api", "web"},
		},
		"no snapshots: no ConfigMap rule at all, never an empty resourceNames": {
			accounts: []string{"web"}, pods: []string{"web-1"},
			wantRules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}, ResourceNames: []string{"web-1"}},
			},
			wantSubjects: []string{"web"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			role, binding := agentaccess.Desired("team", tc.accounts, tc.pods, tc.snapshots)
			if tc.wantSubjects == nil {
				if role != nil || binding != nil {
					t.Fatalf("want no Role and no RoleBinding, got %v and %v", role, binding)
				}
				return
			}
			if diff := cmp.Diff(tc.wantRules, role.Rules); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			var subjects []string
			for _, s := range binding.Subjects {
				if s.Kind != rbacv1.ServiceAccountKind || s.Namespace != "team" {
					t.Errorf("subject %+v is not a service account of the namespace", s)
				}
				subjects = append(subjects, s.Name)
			}
			if diff := cmp.Diff(tc.wantSubjects, subjects); diff != "" {
				t.Errorf("subjects (-want +got):\n%s", diff)
			}
			if binding.RoleRef.Name != role.Name || role.Name != agentaccess.Name {
				t.Errorf("binding refers to %q, role is %q, want both %q", binding.RoleRef.Name, role.Name, agentaccess.Name)
			}
		})
	}
}

// TestAgentRights runs the shipped admission policy and the Role on a real
// API server, and acts with a real service-account token bound to pod A.
func TestAgentRights(t *testing.T) {
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	admin := env.Client
	const ns = "team"

	applyPolicy(ctx, t, admin)
	must(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"a", "b"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{workersv1alpha1.PoolLabel: "web"}},
			Spec: corev1.PodSpec{
				ServiceAccountName: "web",
				Containers:         []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}},
			},
		}
		must(t, admin.Create(ctx, pod))
		pods[name] = pod
	}
	for _, name := range []string{"web-rev-1", "unrelated"} {
		must(t, admin.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}))
	}
	role, binding := agentaccess.Desired(ns, []string{"web"}, []string{"a", "b"}, []string{"web-rev-1"})
	must(t, admin.Create(ctx, role))
	must(t, admin.Create(ctx, binding))

	// A service account that is no agent, with rights of its own to patch pods.
	must(t, admin.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-editor", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch"}}},
	}))
	must(t, admin.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-editor", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-editor"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "editor", Namespace: ns}},
	}))
	editorPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "editor", Namespace: ns},
		Spec:       corev1.PodSpec{ServiceAccountName: "editor", Containers: []corev1.Container{{Name: "c", Image: "registry.example/editor:v1"}}},
	}
	must(t, admin.Create(ctx, editorPod))

	agentA := clientWithToken(ctx, t, env, ns, "web", pods["a"])
	editor := clientWithToken(ctx, t, env, ns, "editor", editorPod)

	// The policy takes effect once the API server has loaded it and its
	// parameter: wait until the first refusal, then check everything.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := patchAnnotation(ctx, agentA, pods["b"], workersv1alpha1.StatusAnnotation, "warmup")
		return err != nil && strings.Contains(err.Error(), "only its own pod"), nil
	})
	if err != nil {
		t.Fatalf("the admission policy never refused pod A's agent patching pod B: %v", err)
	}

	cases := []struct {
		name string
		do   func(ctx context.Context) error
		// refusal is "" when the call must succeed, else what the error says.
		refusal string
	}{
		{"agent patches its own status annotation", func(ctx context.Context) error {
			return patchAnnotation(ctx, agentA, pods["a"], workersv1alpha1.StatusAnnotation, `{"state":"Ready"}`)
		}, ""},
		{"agent reads and watches its own pod", func(ctx context.Context) error {
			if _, err := agentA.CoreV1().Pods(ns).Get(ctx, "a", metav1.GetOptions{}); err != nil {
				return err
			}
			w, err := agentA.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=a"})
			if err == nil {
				w.Stop()
			}
			return err
		}, ""},
		{"agent reads its pool's snapshot", func(ctx context.Context) error {
			_, err := agentA.CoreV1().ConfigMaps(ns).Get(ctx, "web-rev-1", metav1.GetOptions{})
			return err
		}, ""},
		{"agent patches another pod's status", func(ctx context.Context) error {
			return patchAnnotation(ctx, agentA, pods["b"], workersv1alpha1.StatusAnnotation, `{"state":"Ready"}`)
		}, "may change only its own pod"},
		{"agent sets its own desired revision", func(ctx context.Context) error {
			return patchAnnotation(ctx, agentA, pods["a"], workersv1alpha1.DesiredRevisionAnnotation, "forged")
		}, "only the softreload.dev/status annotation"},
		{"agent adds an annotation of its own", func(ctx context.Context) error {
			return patchAnnotation(ctx, agentA, pods["a"], "example.com/other", "x")
		}, "only the softreload.dev/status annotation"},
		{"agent changes its pod's labels", func(ctx context.Context) error {
			patch := []byte(`{"metadata":{"labels":{"tier":"gold"}}}`)
			_, err := agentA.CoreV1().Pods(ns).Patch(ctx, "a", types.MergePatchType, patch, metav1.PatchOptions{})
			return err
		}, "labels or spec"},
		{"agent changes its pod's image", func(ctx context.Context) error {
			patch := []byte(`{"spec":{"containers":[{"name":"app","image":"registry.example/app:evil"}]}}`)
			_, err := agentA.CoreV1().Pods(ns).Patch(ctx, "a", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
			return err
		}, "labels or spec"},
		{"agent reads a pod softreload does not govern", func(ctx context.Context) error {
			_, err := agentA.CoreV1().Pods(ns).Get(ctx, "editor", metav1.GetOptions{})
			return err
		}, "forbidden"},
		{"agent lists every pod of the namespace", func(ctx context.Context) error {
			_, err := agentA.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		}, "forbidden"},
		{"agent reads an unrelated ConfigMap", func(ctx context.Context) error {
			_, err := agentA.CoreV1().ConfigMaps(ns).Get(ctx, "unrelated", metav1.GetOptions{})
			return err
		}, "forbidden"},
		{"agent lists secrets", func(ctx context.Context) error {
			_, err := agentA.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		}, "forbidden"},
		{"agent deletes a pod", func(ctx context.Context) error {
			return agentA.CoreV1().Pods(ns).Delete(ctx, "b", metav1.DeleteOptions{})
		}, "forbidden"},
		{"agent patches a pod of another namespace", func(ctx context.Context) error {
			_, err := agentA.CoreV1().Pods("default").Patch(ctx, "x", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
			return err
		}, "forbidden"},
		{"a service account that is no agent keeps its own rights", func(ctx context.Context) error {
			return patchAnnotation(ctx, editor, pods["b"], "example.com/owner", "team-b")
		}, ""},
		{"the administrator writes a desired revision", func(ctx context.Context) error {
			patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:"rev-2"}}}`, workersv1alpha1.DesiredRevisionAnnotation)))
			return admin.Patch(ctx, pods["b"].DeepCopy(), patch)
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do(ctx)
			switch {
			case tc.refusal == "" && err != nil:
				t.Fatalf("want it allowed, got %v", err)
			case tc.refusal != "" && err == nil:
				t.Fatalf("want it refused (%q), but it was allowed", tc.refusal)
			case tc.refusal != "" && !strings.Contains(err.Error(), tc.refusal):
				t.Fatalf("refused with %q, want it to say %q", err, tc.refusal)
			}
		})
	}

	t.Run("the Role grants what the agent needs and nothing more", func(t *testing.T) {
		user := "system:serviceaccount:" + ns + ":web"
		checks := []struct {
			attrs authorizationv1.ResourceAttributes
			want  bool
		}{
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "pods", Name: "a"}, true},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "watch", Resource: "pods", Name: "a"}, true},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "watch", Resource: "pods"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "pods", Name: "editor"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Resource: "pods", Name: "a"}, true},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "configmaps", Name: "web-rev-1"}, true},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "configmaps", Name: "unrelated"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: "configmaps"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "update", Resource: "configmaps", Name: "web-rev-1"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "pods"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "delete", Resource: "pods", Name: "a"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "update", Resource: "pods", Subresource: "status", Name: "a"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "exec", Name: "a"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "secrets"}, false},
			{authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "workerpools", Group: "workers.softreload.dev"}, false},
			{authorizationv1.ResourceAttributes{Namespace: "default", Verb: "get", Resource: "pods"}, false},
		}
		for _, c := range checks {
			review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				ResourceAttributes: &c.attrs,
			}}
			must(t, admin.Create(ctx, review))
			if review.Status.Allowed != c.want {
				t.Errorf("%s %s/%s %q in %s: allowed=%v, want %v", c.attrs.Verb, c.attrs.Resource, c.attrs.Subresource, c.attrs.Name, c.attrs.Namespace, review.Status.Allowed, c.want)
			}
		}
	})
}

func applyPolicy(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	root, err := envtest.RepoRoot()
	must(t, err)
	f, err := os.Open(filepath.Join(root, "config", "policy", "agent-pod-policy.yaml"))
	must(t, err)
	defer f.Close()
	decoder := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatalf("reading the admission policy: %v", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}

// clientWithToken returns a clientset that authenticates with a real token
// of serviceAccount bound to pod, as a kubelet would mount it.
func clientWithToken(ctx context.Context, t *testing.T, env *envtest.Env, ns, serviceAccount string, pod *corev1.Pod) kubernetes.Interface {
	t.Helper()
	admin := kubernetes.NewForConfigOrDie(env.Config)
	_, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	token, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("requesting a token bound to pod %s: %v", pod.Name, err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = token.Status.Token
	return kubernetes.NewForConfigOrDie(cfg)
}

func patchAnnotation(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, key, value string) error {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value))
	_, err := c.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
