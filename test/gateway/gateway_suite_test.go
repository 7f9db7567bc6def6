//go:build e2e

// Package gateway_test runs softreload's gateway pattern (examples/gateway,
// docs/gateway.md) under a standalone agent: WebSocket clients on a gateway
// that is never reloaded, whose messages the reloadable business group
// answers, through reloads and a broken revision.
package gateway_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/suite"
)

func TestGateway(t *testing.T) { suite.Run(t, "the gateway pattern through reloads") }

var (
	root     string // the module's root
	agentBin string // the agent, built once
	python   string // a python3 with the websockets library
)

var _ = BeforeSuite(func() {
	var err error
	root, err = filepath.Abs("../..")
	Expect(err).NotTo(HaveOccurred())
	python, err = local.PythonWithWebsockets()
	Expect(err).NotTo(HaveOccurred())
	agentBin = filepath.Join(GinkgoT().TempDir(), "agent")
	cmd := exec.Command("go", "build", "-o", agentBin, "./cmd/agent")
	cmd.Dir = root
	cmd.Env = os.Environ()
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build ./cmd/agent:\n%s", out)
	// Waits are for things that happen; a busy machine only makes them slow.
	SetDefaultEventuallyTimeout(2 * time.Minute)
})
