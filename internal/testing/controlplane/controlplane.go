// Package controlplane starts the control plane of a Ginkgo suite once, in
// its BeforeSuite, and stops it in its AfterSuite; with go test -short it
// starts none, since the specs that need one do not run (package suite).
// It is a package of its own so that the suites that need no control plane
// do not link one.
package controlplane

import (
	"testing"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/testing/envtest"
)

// Start starts a control plane for the suite; call it from BeforeSuite.
// With go test -short it starts nothing and returns nil: no spec that
// needs one runs.
func Start(opts envtest.Options) *envtest.Env {
	if testing.Short() {
		return nil
	}
	env, err := envtest.Start(opts)
	if err != nil {
		ginkgo.Fail(err.Error()) // the error as it reads, not as a Go value
	}
	return env
}

// Stop stops what Start started; call it from AfterSuite. A nil env is
// nothing to stop.
func Stop(env *envtest.Env) {
	if env == nil {
		return
	}
	gomega.Expect(env.Stop()).To(gomega.Succeed(), "stopping the control plane")
}
