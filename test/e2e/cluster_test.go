//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/supervisor"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/podrecord"
)

// workers asks a pod's agent, over its control socket, for its workers.
func workers(ctx context.Context, p *local.Pod) supervisor.Status {
	GinkgoHelper()
	st, err := agentStatus(ctx, p)
	Expect(err).NotTo(HaveOccurred(), "pod %s: agent status", p.Name)
	return st
}

// agentStatus asks a pod's agent for its workers; an error says the agent
// does not answer (yet).
func agentStatus(ctx context.Context, p *local.Pod) (supervisor.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return control.NewClient(filepath.Join(p.CodeDir, "agent.sock")).Status(ctx)
}

// waitFor waits, polling every 200ms, until cond holds or timeout passes;
// cond describes what it saw, for the failure.
func waitFor(what string, timeout time.Duration, cond func() (bool, string)) {
	GinkgoHelper()
	var last string
	Eventually(func() bool {
		var ok bool
		ok, last = cond()
		return ok
	}).WithTimeout(timeout).WithPolling(200*time.Millisecond).Should(BeTrue(), func() string {
		return fmt.Sprintf("%s: not within %v; last seen:\n%s", what, timeout, last)
	})
}

// logf writes to the spec's log, shown when it fails or with -ginkgo.v.
func logf(format string, args ...any) { fmt.Fprintf(GinkgoWriter, format+"\n", args...) }

// getPool reads the pool; an error (the API server is away) is returned as
// a description for waitFor.
func getPool(ctx context.Context, c client.Client, namespace string) (*v1alpha1.WorkerPool, string) {
	pool := &v1alpha1.WorkerPool{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: local.ExamplePool}, pool); err != nil {
		return nil, err.Error()
	}
	return pool, podrecord.DescribePool(pool)
}
