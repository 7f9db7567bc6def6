package v1alpha1_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"

	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// env is the suite's control plane, with the generated CRD installed; nil
// with go test -short, which runs the specs of pure logic alone.
var env *envtest.Env

func TestV1alpha1(t *testing.T) { suite.Run(t, "api/v1alpha1") }

var _ = BeforeSuite(func() { env = controlplane.Start(envtest.Options{}) })

var _ = AfterSuite(func() { controlplane.Stop(env) })
