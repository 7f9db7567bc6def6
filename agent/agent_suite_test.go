package agent_test

import (
	"os"
	"testing"

	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/internal/testing/suite"
)

// TestMain lets this test binary be the process shim and the test worker
// the agent starts.
func TestMain(m *testing.M) {
	process.RunShimIfAsked()
	testworker.RunIfAsked()
	os.Exit(m.Run())
}

func TestAgent(t *testing.T) { suite.Run(t, "agent") }
