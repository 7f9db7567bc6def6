package plugin_test

import (
	"os"
	"path/filepath"
	"testing"

	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/softreload/softreload/internal/testing/envtest"
)

// TestNotInstalled runs the plugin against an API server without the
// WorkerPool CRD: a user who installed the plugin but not the operator.
func TestNotInstalled(t *testing.T) {
	root, err := envtest.RepoRoot()
	must(t, err)
	assets, err := envtest.Assets(root)
	must(t, err)
	bare := &crenvtest.Environment{BinaryAssetsDirectory: assets}
	if _, err := bare.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bare.Stop() })
	admin, err := bare.ControlPlane.AddUser(crenvtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	must(t, err)
	data, err := admin.KubeConfig()
	must(t, err)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(kc, data, 0o600))

	for _, args := range [][]string{{"status", "web"}, {"history", "web"}, {"reload", "web"}, {"pause", "web"}, {"rollback", "web"}} {
		r := kubectlSoftreloadWith(t, kc, nil, args...)
		if r.err == nil {
			t.Errorf("%v succeeded without the WorkerPool API", args)
			continue
		}
		wantContains(t, r.err.Error(), "the WorkerPool API (workers.softreload.dev/v1alpha1) is not served by this cluster: is softreload installed?")
	}
}
