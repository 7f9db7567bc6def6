package main

import (
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// TestManager runs the manager's specs. Those that need a control plane
// carry its label: go test -short leaves them out.
func TestManager(t *testing.T) { suite.Run(t, "cmd/manager") }

// env is the control plane of the specs that need one, with the injection
// webhook's configuration pointed at the envtest's loopback webhook
// address; nil with go test -short. One spec at a time serves that
// address, and stops serving before it ends.
var env *envtest.Env

var _ = BeforeSuite(func() {
	root, err := envtest.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	env = controlplane.Start(envtest.Options{WebhookPaths: []string{filepath.Join(root, "config", "webhook", "manifests.yaml")}})
})

var _ = AfterSuite(func() { controlplane.Stop(env) })
