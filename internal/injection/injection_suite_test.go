package injection_test

import (
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// env is the suite's control plane, with the webhook configuration that
// config/ ships pointed at a local webhook server; nil with go test -short.
var env *envtest.Env

func TestInjection(t *testing.T) { suite.Run(t, "internal/injection") }

var _ = BeforeSuite(func() {
	root, err := envtest.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	env = controlplane.Start(envtest.Options{WebhookPaths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}})
})

var _ = AfterSuite(func() { controlplane.Stop(env) })
