package plugin_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// userKubeconfig adds an API server user without any group and writes a
// kubeconfig for it.
func userKubeconfig(t *testing.T, name string) string {
	t.Helper()
	user, err := env.Environment().ControlPlane.AddUser(crenvtest.User{Name: name}, nil)
	must(t, err)
	data, err := user.KubeConfig()
	must(t, err)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(path, data, 0o600))
	return path
}

// grant gives a user a Role in a namespace.
func grant(t *testing.T, ns, user string, rules ...rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	must(t, env.Client.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user}, Rules: rules}))
	must(t, env.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}))
}

// eventuallyReads waits until a user's new Role has reached the API
// server's authorizer, which learns of RBAC objects through an informer.
func eventuallyReads(t *testing.T, kc, ns, pool string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		r := kubectlSoftreloadWith(t, kc, nil, "status", pool, "-n", ns)
		if r.err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the user still cannot read workerpool %s: %v", pool, r.err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDocumentedRights runs every command as users holding exactly the
// rights docs/kubectl-plugin.md lists, and as one who may only read.
func TestDocumentedRights(t *testing.T) {
	ns := namespace(t)
	shop(t, ns)
	pod(t, ns, "shop-0", "shop", map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "rev-4"})

	reader := []rbacv1.PolicyRule{
		{APIGroups: []string{workersv1alpha1.GroupVersion.Group}, Resources: []string{"workerpools"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods", "configmaps"}, Verbs: []string{"list"}},
	}
	grant(t, ns, "shop-viewer", reader...)
	grant(t, ns, "shop-operator", append(reader,
		rbacv1.PolicyRule{APIGroups: []string{workersv1alpha1.GroupVersion.Group}, Resources: []string{"workerpools"}, Verbs: []string{"patch"}})...)

	t.Run("the documented rights are enough for every command", func(t *testing.T) {
		kc := userKubeconfig(t, "shop-operator")
		eventuallyReads(t, kc, ns, "shop")
		for _, args := range [][]string{
			{"status", "shop"}, {"history", "shop"}, {"reload", "shop"},
			{"pause", "shop"}, {"resume", "shop"}, {"rollback", "shop"},
		} {
			if r := kubectlSoftreloadWith(t, kc, nil, append(args, "-n", ns)...); r.err != nil {
				t.Errorf("%v: %v", args, r.err)
			}
		}
		if got := getPool(t, ns, "shop").Annotations[workersv1alpha1.RollbackToAnnotation]; got != "rev-1" {
			t.Errorf("rollback-to = %q, want rev-1", got)
		}
	})

	t.Run("a reader can look but not change", func(t *testing.T) {
		kc := userKubeconfig(t, "shop-viewer")
		eventuallyReads(t, kc, ns, "shop")
		must(t, kubectlSoftreloadWith(t, kc, nil, "status", "shop", "-n", ns).err)
		must(t, kubectlSoftreloadWith(t, kc, nil, "history", "shop", "-n", ns).err)
		r := kubectlSoftreloadWith(t, kc, nil, "pause", "shop", "-n", ns)
		if r.err == nil {
			t.Fatal("a reader paused the pool")
		}
		wantContains(t, r.err.Error(), `setting spec.paused=true on workerpool "shop" in namespace "`+ns+`"`, "forbidden", `cannot patch resource "workerpools"`)
		if getPool(t, ns, "shop").Spec.Paused {
			t.Error("spec.paused changed")
		}
	})

	t.Run("a stranger is told the API server refused, not that the pool is missing", func(t *testing.T) {
		r := kubectlSoftreloadWith(t, userKubeconfig(t, "stranger"), nil, "status", "shop", "-n", ns)
		if r.err == nil {
			t.Fatal("a user without rights read the pool")
		}
		wantContains(t, r.err.Error(), `reading workerpool "shop" in namespace "`+ns+`"`, "forbidden")
	})
}
