package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/supervisor"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/local"
)

// workers asks a pod's agent, over its control socket, for its workers.
func workers(ctx context.Context, t *testing.T, p *local.Pod) supervisor.Status {
	t.Helper()
	st, err := agentStatus(ctx, p)
	if err != nil {
		t.Fatalf("pod %s: agent status: %v", p.Name, err)
	}
	return st
}

// agentStatus asks a pod's agent for its workers; an error says the agent
// does not answer (yet).
func agentStatus(ctx context.Context, p *local.Pod) (supervisor.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return control.NewClient(filepath.Join(p.CodeDir, "agent.sock")).Status(ctx)
}

// waitFor polls cond every 200ms until it holds or timeout passes.
func waitFor(ctx context.Context, t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		var ok bool
		ok, last = cond()
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %v; last seen:\n%s", what, timeout, last)
	}
}

// getPool reads the pool; an error (the API server is away) is returned as
// a description for waitFor.
func getPool(ctx context.Context, c client.Client, namespace string) (*v1alpha1.WorkerPool, string) {
	pool := &v1alpha1.WorkerPool{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: local.ExamplePool}, pool); err != nil {
		return nil, err.Error()
	}
	return pool, describePool(pool)
}

func describePool(pool *v1alpha1.WorkerPool) string {
	var b strings.Builder
	s := pool.Status
	fmt.Fprintf(&b, "pool: generation %d observed %d, current %q update %q, pods %d updated %d ready %d reloading %d failed %d\n",
		pool.Generation, s.ObservedGeneration, s.CurrentRevision, s.UpdateRevision, s.Pods, s.UpdatedPods, s.ReadyPods, s.ReloadingPods, s.FailedPods)
	for _, c := range s.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

func condition(pool *v1alpha1.WorkerPool, typ string) *metav1.Condition {
	for i := range pool.Status.Conditions {
		if pool.Status.Conditions[i].Type == typ {
			return &pool.Status.Conditions[i]
		}
	}
	return nil
}
