package main

import (
	"testing"

	"github.com/softreload/softreload/internal/testing/suite"
)

// TestManager runs the manager's specs. Those that need a control plane
// carry its label: go test -short leaves them out.
func TestManager(t *testing.T) { suite.Run(t, "cmd/manager") }
