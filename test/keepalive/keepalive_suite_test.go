//go:build e2e

// Package keepalive_test runs every example worker under the agent with
// keep-alive clients and new-connection clients at once, through reloads:
// no request fails, every client sees the new code within a second of the
// reload's end, and no old worker has to be killed.
package keepalive_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/testing/suite"
)

func TestKeepAlive(t *testing.T) { suite.Run(t, "keep-alive clients through reloads") }

var (
	root     string // the module's root
	agentBin string // the agent, built once
)

var _ = BeforeSuite(func() {
	var err error
	root, err = filepath.Abs("../..")
	Expect(err).NotTo(HaveOccurred())
	agentBin = filepath.Join(GinkgoT().TempDir(), "agent")
	build(agentBin, "./cmd/agent")
	// Waits are for things that happen; a busy machine only makes them slow.
	SetDefaultEventuallyTimeout(2 * time.Minute)
})

// build builds the package pkg of the module into out.
func build(out, pkg string) {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = os.Environ()
	b, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build %s:\n%s", pkg, b)
}
