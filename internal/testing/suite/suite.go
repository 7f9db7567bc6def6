package suite

import (
	"os"
	"testing"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/softreload/softreload/internal/testing/envtest"
)

// ControlPlane labels the specs that need a control plane. go test -short
// leaves them out; go test -ginkgo.label-filter=controlplane runs them alone.
const ControlPlane = "controlplane"

// Run runs the Ginkgo specs of the test binary, described by description.
// With go test -short, the specs labelled ControlPlane are left out, on top
// of any label filter given.
func Run(t *testing.T, description string) bool {
	gomega.RegisterFailHandler(ginkgo.Fail)
	ctrllog.SetLogger(ginkgo.GinkgoLogr)
	cfg, reporter := ginkgo.GinkgoConfiguration()
	if testing.Short() {
		cfg.LabelFilter = withoutControlPlane(cfg.LabelFilter)
	}
	// Colours are for a terminal; a log (make test in CI) reads better
	// without escape codes.
	if info, err := os.Stdout.Stat(); err == nil && info.Mode()&os.ModeCharDevice == 0 {
		reporter.NoColor = true
	}
	return ginkgo.RunSpecs(t, description, cfg, reporter)
}

// withoutControlPlane narrows a label filter to the specs that need no
// control plane.
func withoutControlPlane(filter string) string {
	if filter == "" {
		return "!" + ControlPlane
	}
	return "(" + filter + ") && !" + ControlPlane
}

// StartControlPlane starts a control plane for the suite; call it from
// BeforeSuite. With go test -short it starts nothing and returns nil: no
// spec that needs one runs.
func StartControlPlane(opts envtest.Options) *envtest.Env {
	if testing.Short() {
		return nil
	}
	env, err := envtest.Start(opts)
	if err != nil {
		ginkgo.Fail(err.Error()) // the error as it reads, not as a Go value
	}
	return env
}

// StopControlPlane stops what StartControlPlane started; call it from
// AfterSuite. A nil env is nothing to stop.
func StopControlPlane(env *envtest.Env) {
	if env == nil {
		return
	}
	gomega.Expect(env.Stop()).To(gomega.Succeed(), "stopping the control plane")
}
