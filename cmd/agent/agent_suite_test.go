package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"

	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// agentBin is the agent built from this package, run as users run it.
var agentBin string

// wait is the generous deadline of every wait for the agent.
const wait = 2 * time.Minute

// TestMain lets this test binary be the test worker and builds the agent.
func TestMain(m *testing.M) {
	testworker.RunIfAsked()
	dir, err := os.MkdirTemp("", "agent-bin")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "agent")
	// go run, not go build: go run keeps the linked agent in the build
	// cache, so that a second run of the suite links nothing; the agent's
	// install command copies it here, as the pod's init container does.
	if out, err := exec.Command("go", "run", ".", "install", agentBin).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// env is the control plane of the specs of agent pod; nil with go test
// -short.
var env *envtest.Env

func TestAgentBinary(t *testing.T) { suite.Run(t, "cmd/agent") }

var _ = BeforeSuite(func() { env = controlplane.Start(envtest.Options{}) })

var _ = AfterSuite(func() { controlplane.Stop(env) })
