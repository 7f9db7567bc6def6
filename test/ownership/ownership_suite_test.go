//go:build e2e

// Package ownership runs softreload on one machine (a real kube-apiserver
// and etcd, the manager as a process, three agent pods of the walkthrough's
// pool serving real sockets under load) and checks the rule "one pod, one
// pool": a second pool whose selector matches the first pool's pods is
// reported and never writes to them, a selected pod without the pool label
// holds no slot of the budget, and deleting the second pool leaves the
// first as it was.
package ownership

import (
	"testing"

	"github.com/softreload/softreload/internal/testing/suite"
)

func TestOwnership(t *testing.T) { suite.Run(t, "test/ownership") }
