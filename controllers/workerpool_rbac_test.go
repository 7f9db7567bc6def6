package controllers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// The controller runs as a user that has only the
// ClusterRole generated into config/rbac from the +kubebuilder:rbac
// markers: a rollout, a failure rolled back, and a rollback on request
// must all work with it.
var _ = It("runs with no more than the generated ClusterRole", Label(suite.ControlPlane), func() {
	f := newFixture()
	root, err := envtest.RepoRoot()
	Expect(err).To(Succeed())
	b, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	Expect(err).To(Succeed())
	role := &rbacv1.ClusterRole{}
	Expect(yaml.Unmarshal(b, role)).To(Succeed())
	user := "softreload-manager-" + f.ns
	role.Name = user
	Expect(f.c.Create(f.ctx, role)).To(Succeed())
	Expect(f.c.Create(f.ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	})).To(Succeed())
	DeferCleanup(func() {
		_ = f.c.Delete(f.ctx, role)
	})
	cfg := rest.CopyConfig(poolEnv.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	f.startManagerWith(cfg, clock.RealClock{})

	f.createCode(map[string]string{"server.py": "print('v1')"})
	f.createPods(podNames(3)...)
	f.createPool(rollback(workersv1alpha1.RollbackAuto))
	v1 := f.waitComplete(3)
	f.waitEvent(EventRolloutComplete)

	f.agents.setBehaviour(failAt("web-1", v1))
	f.editCode(map[string]string{"server.py": "syntax error"})
	f.waitCondition(workersv1alpha1.ConditionProgressing, metav1.ConditionFalse, workersv1alpha1.ReasonRolledBack)
	v2 := f.pool().Status.History[0].Revision

	f.agents.setBehaviour(func(string, string) outcome { return succeed })
	f.editCode(map[string]string{"server.py": "print('v3')"})
	v3 := f.waitRollout(v1, 3)
	f.updatePool(func(p *workersv1alpha1.WorkerPool) {
		p.Annotations = map[string]string{workersv1alpha1.RollbackToAnnotation: v1}
	})
	Expect(f.waitRollout(v3, 3)).To(Equal(v1), "the revision rolled back to")
	Eventually(func() error {
		if _, ok := f.pool().Annotations[workersv1alpha1.RollbackToAnnotation]; ok {
			return fmt.Errorf("%s is still set", workersv1alpha1.RollbackToAnnotation)
		}
		return nil
	}).Should(Succeed(), "the rollback request is removed")
	Expect(strings.Join(f.agents.sentTo("web-2"), ",")).NotTo(ContainSubstring(v2), "web-2 was told the failed revision")
})
