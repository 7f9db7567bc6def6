package main

import (
	"testing"

	"github.com/softreload/softreload/internal/testing/suite"
)

// TestManager runs the manager's specs; every one needs a control plane,
// so go test -short skips them all.
func TestManager(t *testing.T) {
	if testing.Short() {
		t.Skip("every spec of the manager needs a control plane")
	}
	suite.Run(t, "cmd/manager")
}
