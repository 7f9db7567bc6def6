package suite

import (
	"os"
	"testing"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Labels of the specs that go test -short leaves out. go test
// -ginkgo.label-filter=controlplane (or slow) runs them alone.
const (
	// ControlPlane labels the specs that need a control plane.
	ControlPlane = "controlplane"
	// Slow labels the specs that run real processes under load through
	// reloads, for tens of seconds each: short mode is for what answers in
	// seconds.
	Slow = "slow"
)

// Run runs the Ginkgo specs of the test binary, described by description.
// With go test -short, the specs labelled ControlPlane or Slow are left
// out, on top of any label filter given.
func Run(t *testing.T, description string) bool {
	gomega.RegisterFailHandler(ginkgo.Fail)
	ctrllog.SetLogger(ginkgo.GinkgoLogr)
	cfg, reporter := ginkgo.GinkgoConfiguration()
	if testing.Short() {
		cfg.LabelFilter = short(cfg.LabelFilter)
	}
	// Colours are for a terminal; a log (make test in CI) reads better
	// without escape codes.
	if info, err := os.Stdout.Stat(); err == nil && info.Mode()&os.ModeCharDevice == 0 {
		reporter.NoColor = true
	}
	return ginkgo.RunSpecs(t, description, cfg, reporter)
}

// short narrows a label filter to the specs that need no control plane
// and are not slow.
func short(filter string) string {
	const quick = "!" + ControlPlane + " && !" + Slow
	if filter == "" {
		return quick
	}
	return "(" + filter + ") && " + quick
}
