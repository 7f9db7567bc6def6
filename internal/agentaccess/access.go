package agentaccess

import (
	"slices"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Name is the name of the Role and the RoleBinding in each namespace. The
// admission policy finds the RoleBinding by it.
const Name = "softreload-agent"

// ManagedByLabel marks the objects this package describes.
const ManagedByLabel = "app.kubernetes.io/managed-by"

// ManagedBy is the value of ManagedByLabel.
const ManagedBy = "softreload"

// Desired returns the Role and RoleBinding that give the agents in namespace
// what they need: the service accounts of the governed pods may get, list,
// watch and patch the governed pods, each by name (the admission policy
// narrows patch to their own pod's status annotation; a list or watch must
// name the pod with a metadata.name field selector), and get the named
// revision snapshots. With no governed pod there is nothing to grant and
// both are nil.
func Desired(namespace string, serviceAccounts, pods, snapshots []string) (*rbacv1.Role, *rbacv1.RoleBinding) {
	accounts, podNames := sortedUnique(serviceAccounts), sortedUnique(pods)
	if len(accounts) == 0 || len(podNames) == 0 {
		return nil, nil
	}
	meta := metav1.ObjectMeta{
		Name:      Name,
		Namespace: namespace,
		Labels:    map[string]string{ManagedByLabel: ManagedBy},
	}
	role := &rbacv1.Role{
		ObjectMeta: meta,
		Rules: []rbacv1.PolicyRule{{
			APIGroups:     []string{""},
			Resources:     []string{"pods"},
			Verbs:         []string{"get", "list", "watch", "patch"},
			ResourceNames: podNames,
		}},
	}
	// An empty resourceNames would grant every ConfigMap of the namespace:
	// no snapshots, no rule.
	if names := sortedUnique(snapshots); len(names) > 0 {
		role.Rules = append(role.Rules, rbacv1.PolicyRule{
			APIGroups:     []string{""},
			Resources:     []string{"configmaps"},
			Verbs:         []string{"get"},
			ResourceNames: names,
		})
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: *meta.DeepCopy(),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: Name},
	}
	for _, sa := range accounts {
		binding.Subjects = append(binding.Subjects, rbacv1.Subject{
			Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: namespace,
		})
	}
	return role, binding
}

// ServiceAccountOf returns the service account a pod runs as: its
// serviceAccountName, or "default".
func ServiceAccountOf(serviceAccountName string) string {
	if serviceAccountName == "" {
		return "default"
	}
	return serviceAccountName
}

func sortedUnique(in []string) []string {
	out := slices.Clone(in)
	slices.Sort(out)
	out = slices.Compact(out)
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

// ServiceAccountReview asks whether service account serviceAccount of
// namespace may do what attrs says, as a request with its token would be
// asked: by its user name and the groups every service account is in.
// Create it with a client; the API server answers in its Status.
func ServiceAccountReview(namespace, serviceAccount string, attrs authorizationv1.ResourceAttributes) *authorizationv1.SubjectAccessReview {
	return &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               "system:serviceaccount:" + namespace + ":" + serviceAccount,
		Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
		ResourceAttributes: &attrs,
	}}
}
