package plugin_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/suite"
)

// userKubeconfig adds an API server user without any group and writes a
// kubeconfig for it.
func userKubeconfig(name string) string {
	GinkgoHelper()
	user, err := env.Environment().ControlPlane.AddUser(crenvtest.User{Name: name}, nil)
	Expect(err).NotTo(HaveOccurred(), "adding user %s", name)
	return writeKubeconfig(user)
}

// grant gives a user a Role in a namespace.
func grant(ns, user string, rules ...rbacv1.PolicyRule) {
	GinkgoHelper()
	ctx := context.Background()
	Expect(env.Client.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: rules})).To(Succeed())
	Expect(env.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	})).To(Succeed())
}

// eventuallyReads waits until a user's new Role has reached the API
// server's authorizer, which learns of RBAC objects through an informer.
func eventuallyReads(kc, ns, pool string) {
	GinkgoHelper()
	Eventually(func() error { return kubectlSoftreloadWith(kc, nil, "status", pool, "-n", ns).err }).
		WithTimeout(time.Minute).WithPolling(100*time.Millisecond).
		Should(Succeed(), "the user still cannot read workerpool %s", pool)
}

// Every command run as users holding exactly the rights
// docs/kubectl-plugin.md lists, and as one who may only read.
var _ = Describe("The documented rights", Ordered, Label(suite.ControlPlane), func() {
	const ns = "plugin-rbac"
	BeforeAll(func() {
		namespace(ns)
		shop(ns)
		pod(ns, "shop-0", "shop", map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "rev-4"})

		reader := []rbacv1.PolicyRule{
			{APIGroups: []string{workersv1alpha1.GroupVersion.Group}, Resources: []string{"workerpools"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods", "configmaps"}, Verbs: []string{"list"}},
		}
		grant(ns, "shop-viewer", reader...)
		grant(ns, "shop-operator", append(reader,
			rbacv1.PolicyRule{APIGroups: []string{workersv1alpha1.GroupVersion.Group}, Resources: []string{"workerpools"}, Verbs: []string{"patch"}})...)
	})

	It("are enough for every command", func() {
		kc := userKubeconfig("shop-operator")
		eventuallyReads(kc, ns, "shop")
		for _, args := range [][]string{
			{"status", "shop"}, {"history", "shop"}, {"reload", "shop"},
			{"pause", "shop"}, {"resume", "shop"}, {"rollback", "shop"}, {"replace-pods", "shop"},
		} {
			Expect(kubectlSoftreloadWith(kc, nil, append(args, "-n", ns)...).err).NotTo(HaveOccurred(), "%v", args)
		}
		Expect(getPool(ns, "shop").Annotations).To(HaveKeyWithValue(workersv1alpha1.RollbackToAnnotation, "rev-1"))
	})

	It("let a reader look but not change", func() {
		kc := userKubeconfig("shop-viewer")
		eventuallyReads(kc, ns, "shop")
		Expect(kubectlSoftreloadWith(kc, nil, "status", "shop", "-n", ns).err).NotTo(HaveOccurred(), "status")
		Expect(kubectlSoftreloadWith(kc, nil, "history", "shop", "-n", ns).err).NotTo(HaveOccurred(), "history")
		r := kubectlSoftreloadWith(kc, nil, "pause", "shop", "-n", ns)
		Expect(r.err).To(MatchError(containAll(
			`setting spec.paused=true on workerpool "shop" in namespace "`+ns+`"`, "forbidden", `cannot patch resource "workerpools"`)),
			"a reader's pause")
		Expect(getPool(ns, "shop").Spec.Paused).To(BeFalse(), "spec.paused changed")
	})

	It("are missing for a stranger, who is told the API server refused, not that the pool is missing", func() {
		r := kubectlSoftreloadWith(userKubeconfig("stranger"), nil, "status", "shop", "-n", ns)
		Expect(r.err).To(MatchError(containAll(`reading workerpool "shop" in namespace "`+ns+`"`, "forbidden")),
			"a user without rights reading the pool")
	})
})
