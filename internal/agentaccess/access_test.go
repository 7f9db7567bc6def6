package agentaccess_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

var _ = DescribeTable("Desired",
	func(accounts, pods, snapshots []string, wantRules []rbacv1.PolicyRule, wantSubjects []string) {
		role, binding := agentaccess.Desired("team", accounts, pods, snapshots)
		if wantSubjects == nil {
			Expect(role).To(BeNil(), "want no Role")
			Expect(binding).To(BeNil(), "want no RoleBinding")
			return
		}
		Expect(role.Rules).To(Equal(wantRules), "rules")
		var subjects []string
		for _, s := range binding.Subjects {
			Expect(s.Kind).To(Equal(rbacv1.ServiceAccountKind), "subject %+v is not a service account", s)
			Expect(s.Namespace).To(Equal("team"), "subject %+v is not of the namespace", s)
			subjects = append(subjects, s.Name)
		}
		Expect(subjects).To(Equal(wantSubjects), "subjects")
		Expect(role.Name).To(Equal(agentaccess.Name), "the Role's name")
		Expect(binding.RoleRef.Name).To(Equal(role.Name), "the RoleBinding's role")
	},
	Entry("no governed pods grant nothing", nil, nil, []string{"web-rev-1"}, nil, nil),
	Entry("accounts are sorted and deduplicated, pods and snapshots named one by one",
		[]string{"web", "", "api", "web"}, []string{"web-2", "api-1", "web-1"}, []string{"web-rev-2", "web-rev-1", "web-rev-2"},
		[]rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}, ResourceNames: []string{"api-1", "web-1", "web-2"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{"web-rev-1", "web-rev-2"}},
		},
		[]string{"api", "web"}),
	Entry("no snapshots: no ConfigMap rule at all, never an empty resourceNames",
		[]string{"web"}, []string{"web-1"}, nil,
		[]rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}, ResourceNames: []string{"web-1"}},
		},
		[]string{"web"}),
)

// The shipped admission policy and the Role on a real API server, acting
// with a real service-account token bound to pod A.
var _ = Describe("An agent's rights", Ordered, Label(suite.ControlPlane), func() {
	const ns = "team"
	var (
		ctx           = context.Background()
		admin         client.Client
		pods          map[string]*corev1.Pod
		agentA, other kubernetes.Interface
	)

	BeforeAll(func() {
		admin = env.Client
		applyPolicy(ctx, admin)
		Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		pods = map[string]*corev1.Pod{}
		for _, name := range []string{"a", "b"} {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{workersv1alpha1.PoolLabel: "web"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: "web",
					Containers:         []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}},
				},
			}
			Expect(admin.Create(ctx, pod)).To(Succeed())
			pods[name] = pod
		}
		for _, name := range []string{"web-rev-1", "unrelated"} {
			Expect(admin.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})).To(Succeed())
		}
		role, binding := agentaccess.Desired(ns, []string{"web"}, []string{"a", "b"}, []string{"web-rev-1"})
		Expect(admin.Create(ctx, role)).To(Succeed())
		Expect(admin.Create(ctx, binding)).To(Succeed())

		// A service account that is no agent, with rights of its own to
		// patch pods.
		Expect(admin.Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-editor", Namespace: ns},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "patch"}}},
		})).To(Succeed())
		Expect(admin.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-editor", Namespace: ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-editor"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "editor", Namespace: ns}},
		})).To(Succeed())
		editorPod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "editor", Namespace: ns},
			Spec:       corev1.PodSpec{ServiceAccountName: "editor", Containers: []corev1.Container{{Name: "c", Image: "registry.example/editor:v1"}}},
		}
		Expect(admin.Create(ctx, editorPod)).To(Succeed())

		agentA = clientWithToken(ctx, ns, "web", pods["a"])
		other = clientWithToken(ctx, ns, "editor", editorPod)

		// The policy takes effect once the API server has loaded it and its
		// parameter: wait until the first refusal, then check everything.
		Eventually(func() error {
			return patchAnnotation(ctx, agentA, pods["b"], workersv1alpha1.StatusAnnotation, "warmup")
		}).WithTimeout(time.Minute).WithPolling(200*time.Millisecond).
			Should(MatchError(ContainSubstring("only its own pod")), "the admission policy never refused pod A's agent patching pod B")
	})

	// refusal is "" when the call must succeed, else what the error says.
	DescribeTable("through the API server",
		func(do func(ctx context.Context) error, refusal string) {
			err := do(ctx)
			if refusal == "" {
				Expect(err).NotTo(HaveOccurred(), "want it allowed")
				return
			}
			Expect(err).To(MatchError(ContainSubstring(refusal)), "want it refused, saying %q", refusal)
		},
		Entry("agent patches its own status annotation", func(ctx context.Context) error {
			return patchAnnotation(ctx, agentA, pods["a"], workersv1alpha1.StatusAnnotation, `{"state":"Ready"}`)
		}, ""),
		Entry("agent reads and watches its own pod", func(ctx context.Context) error {
			if _, err := agentA.CoreV1().Pods(ns).Get(ctx, "a", metav1.GetOptions{}); err != nil {
				return err
			}
			w, err := agentA.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=a"})
			if err == nil {
				w.Stop()
			}
			return err
		}, ""),
		Entry("agent reads its pool's snapshot", func(ctx context.Context) error {
			_, err := agentA.CoreV1().ConfigMaps(ns).Get(ctx, "web-rev-1", metav1.GetOptions{})
			return err
		}, ""),
		Entry("agent patches another pod's status", func(ctx context.Context) error {
			return patchAnnotation(ctx, agentA, pods["b"], workersv1alpha1.StatusAnnotation, `{"state":"Ready"}`)
		}, "may change only its own pod"),
		Entry("agent sets its own desired revision", func(ctx context.Context) error {
			return patchAnnotation(ctx, agentA, pods["a"], workersv1alpha1.DesiredRevisionAnnotation, "forged")
		}, "only the softreload.dev/status annotation"),
		Entry("agent adds an annotation of its own", func(ctx context.Context) error {
			return patchAnnotation(ctx, agentA, pods["a"], "example.com/other", "x")
		}, "only the softreload.dev/status annotation"),
		Entry("agent changes its pod's labels", func(ctx context.Context) error {
			patch := []byte(`{"metadata":{"labels":{"tier":"gold"}}}`)
			_, err := agentA.CoreV1().Pods(ns).Patch(ctx, "a", types.MergePatchType, patch, metav1.PatchOptions{})
			return err
		}, "labels or spec"),
		Entry("agent changes its pod's image", func(ctx context.Context) error {
			patch := []byte(`{"spec":{"containers":[{"name":"app","image":"registry.example/app:evil"}]}}`)
			_, err := agentA.CoreV1().Pods(ns).Patch(ctx, "a", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
			return err
		}, "labels or spec"),
		Entry("agent reads a pod softreload does not govern", func(ctx context.Context) error {
			_, err := agentA.CoreV1().Pods(ns).Get(ctx, "editor", metav1.GetOptions{})
			return err
		}, "forbidden"),
		Entry("agent lists every pod of the namespace", func(ctx context.Context) error {
			_, err := agentA.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			return err
		}, "forbidden"),
		Entry("agent reads an unrelated ConfigMap", func(ctx context.Context) error {
			_, err := agentA.CoreV1().ConfigMaps(ns).Get(ctx, "unrelated", metav1.GetOptions{})
			return err
		}, "forbidden"),
		Entry("agent lists secrets", func(ctx context.Context) error {
			_, err := agentA.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		}, "forbidden"),
		Entry("agent deletes a pod", func(ctx context.Context) error {
			return agentA.CoreV1().Pods(ns).Delete(ctx, "b", metav1.DeleteOptions{})
		}, "forbidden"),
		Entry("agent patches a pod of another namespace", func(ctx context.Context) error {
			_, err := agentA.CoreV1().Pods("default").Patch(ctx, "x", types.MergePatchType, []byte(`{}`), metav1.PatchOptions{})
			return err
		}, "forbidden"),
		Entry("a service account that is no agent keeps its own rights", func(ctx context.Context) error {
			return patchAnnotation(ctx, other, pods["b"], "example.com/owner", "team-b")
		}, ""),
		Entry("the administrator writes a desired revision", func(ctx context.Context) error {
			patch := client.RawPatch(types.MergePatchType, []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:"rev-2"}}}`, workersv1alpha1.DesiredRevisionAnnotation)))
			return admin.Patch(ctx, pods["b"].DeepCopy(), patch)
		}, ""),
	)

	// The Role grants what the agent needs and nothing more.
	DescribeTable("in the Role",
		func(attrs authorizationv1.ResourceAttributes, want bool) {
			review := agentaccess.ServiceAccountReview(ns, "web", attrs)
			Expect(admin.Create(ctx, review)).To(Succeed())
			Expect(review.Status.Allowed).To(Equal(want), "allowed")
		},
		func(attrs authorizationv1.ResourceAttributes, want bool) string {
			return fmt.Sprintf("%s %s/%s %q in %s: allowed=%v", attrs.Verb, attrs.Resource, attrs.Subresource, attrs.Name, attrs.Namespace, want)
		},
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "pods", Name: "a"}, true),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "watch", Resource: "pods", Name: "a"}, true),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "watch", Resource: "pods"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "pods", Name: "editor"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "patch", Resource: "pods", Name: "a"}, true),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "configmaps", Name: "web-rev-1"}, true),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "configmaps", Name: "unrelated"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "list", Resource: "configmaps"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "update", Resource: "configmaps", Name: "web-rev-1"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "pods"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "delete", Resource: "pods", Name: "a"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "update", Resource: "pods", Subresource: "status", Name: "a"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "exec", Name: "a"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "secrets"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: ns, Verb: "get", Resource: "workerpools", Group: "workers.softreload.dev"}, false),
		Entry(nil, authorizationv1.ResourceAttributes{Namespace: "default", Verb: "get", Resource: "pods"}, false),
	)
})

// applyPolicy creates the shipped admission policy.
func applyPolicy(ctx context.Context, c client.Client) {
	root, err := envtest.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	f, err := os.Open(filepath.Join(root, "config", "policy", "agent-pod-policy.yaml"))
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = f.Close() }()
	decoder := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			Fail(fmt.Sprintf("reading the admission policy: %v", err))
		}
		if len(obj.Object) == 0 {
			continue
		}
		Expect(c.Create(ctx, obj)).To(Succeed(), "creating %s %s", obj.GetKind(), obj.GetName())
	}
}

// clientWithToken returns a clientset that authenticates with a real token
// of serviceAccount bound to pod, as a kubelet would mount it.
func clientWithToken(ctx context.Context, ns, serviceAccount string, pod *corev1.Pod) kubernetes.Interface {
	admin := kubernetes.NewForConfigOrDie(env.Config)
	_, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred(), "creating service account %s", serviceAccount)
	}
	token, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred(), "requesting a token bound to pod %s", pod.Name)
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = token.Status.Token
	return kubernetes.NewForConfigOrDie(cfg)
}

func patchAnnotation(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, key, value string) error {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value))
	_, err := c.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}
