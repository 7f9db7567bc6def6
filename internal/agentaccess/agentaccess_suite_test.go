package agentaccess_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"

	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// env is the suite's control plane; nil with go test -short.
var env *envtest.Env

func TestAgentAccess(t *testing.T) { suite.Run(t, "internal/agentaccess") }

var _ = BeforeSuite(func() { env = controlplane.Start(envtest.Options{}) })

var _ = AfterSuite(func() { controlplane.Stop(env) })
