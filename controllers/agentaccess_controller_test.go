package controllers

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
	"github.com/softreload/softreload/internal/testing/suite"
)

// The agent-access reconciler, against a real API server, follows the namespace's Role and RoleBinding as pods and snapshots come
// and go.
var _ = It("keeps the agents' Role and RoleBinding to the pools' pods and snapshots", Label(suite.ControlPlane), func() {
	env := poolEnv
	const ns = "shop"
	ctx, cancel := context.WithCancel(context.Background())
	DeferCleanup(cancel)

	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Cache: testCacheOptions(ns),
		// -count=2 builds the controller a second time in this process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(NewAgentAccessReconciler(mgr.GetClient()).SetupWithManager(mgr)).To(Succeed())
	go func() { _ = mgr.Start(ctx) }()
	c := env.Client
	Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())

	pool := &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: workersv1alpha1.WorkerPoolSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Code:     workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}},
			Groups:   []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"./server"}}},
		},
	}
	Expect(c.Create(ctx, pool)).To(Succeed())
	pod := func(name, app, sa string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app, workersv1alpha1.PoolLabel: app}},
			Spec:       corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:v1"}}},
		}
	}
	web1, web2, other := pod("web-1", "web", "web-sa"), pod("web-2", "web", ""), pod("db-1", "db", "db-sa")
	for _, p := range []*corev1.Pod{web1, web2, other} {
		Expect(c.Create(ctx, p)).To(Succeed())
	}
	snapshot := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "web-rev-1", Namespace: ns, Labels: map[string]string{workersv1alpha1.PoolNameLabel: "web"},
	}}
	Expect(c.Create(ctx, snapshot)).To(Succeed())
	Expect(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web-code", Namespace: ns}})).To(Succeed())

	// waitFor waits until the namespace's grants are what want says: the
	// subjects of the RoleBinding, and the pods and ConfigMaps the Role
	// names (nil: neither object exists).
	type grants struct{ Subjects, Pods, Snapshots []string }
	read := func() *grants {
		role, binding := &rbacv1.Role{}, &rbacv1.RoleBinding{}
		key := types.NamespacedName{Namespace: ns, Name: agentaccess.Name}
		errRole, errBinding := c.Get(ctx, key, role), c.Get(ctx, key, binding)
		if errRole != nil || errBinding != nil {
			return nil // not there (yet, or any more): poll again
		}
		g := &grants{}
		for _, s := range binding.Subjects {
			g.Subjects = append(g.Subjects, s.Name)
		}
		for _, rule := range role.Rules {
			switch {
			case len(rule.Resources) != 1:
			case rule.Resources[0] == "configmaps":
				g.Snapshots = append(g.Snapshots, rule.ResourceNames...)
			case rule.Resources[0] == "pods":
				g.Pods = append(g.Pods, rule.ResourceNames...)
			}
		}
		return g
	}
	waitFor := func(step string, want *grants) {
		GinkgoHelper()
		Eventually(read).WithTimeout(30*time.Second).WithPolling(100*time.Millisecond).Should(BeComparableTo(want), step)
	}

	waitFor("pods and a snapshot", &grants{Subjects: []string{"default", "web-sa"}, Pods: []string{"web-1", "web-2"}, Snapshots: []string{"web-rev-1"}})

	Expect(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "web-rev-2", Namespace: ns, Labels: map[string]string{workersv1alpha1.PoolNameLabel: "web"},
	}})).To(Succeed())
	waitFor("a second snapshot", &grants{Subjects: []string{"default", "web-sa"}, Pods: []string{"web-1", "web-2"}, Snapshots: []string{"web-rev-1", "web-rev-2"}})

	Expect(c.Delete(ctx, web2)).To(Succeed())
	waitFor("a pod gone", &grants{Subjects: []string{"web-sa"}, Pods: []string{"web-1"}, Snapshots: []string{"web-rev-1", "web-rev-2"}})

	// A hand edit of the binding is put back.
	binding := &rbacv1.RoleBinding{}
	Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: agentaccess.Name}, binding)).To(Succeed())
	binding.Subjects = append(binding.Subjects, rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "intruder", Namespace: ns})
	Expect(c.Update(ctx, binding)).To(Succeed())
	waitFor("a hand edit", &grants{Subjects: []string{"web-sa"}, Pods: []string{"web-1"}, Snapshots: []string{"web-rev-1", "web-rev-2"}})

	Expect(c.Delete(ctx, web1)).To(Succeed())
	waitFor("no governed pod left", nil)
})
