package pod_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"

	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// env is the suite's control plane; nil with go test -short.
var env *envtest.Env

func TestPod(t *testing.T) { suite.Run(t, "agent/pod") }

var _ = BeforeSuite(func() { env = controlplane.Start(envtest.Options{}) })

var _ = AfterSuite(func() { controlplane.Stop(env) })
