package pod

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/softreload/softreload/agent"
	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/supervisor"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// EngineOptions configure the engine that SupervisorEngine builds. Zero
// values mean the defaults.
type EngineOptions struct {
	// Rebind, if set, gives the address at which each listen address of a
	// revision is bound. Only softreload's local mode sets it (cmd/agent
	// built with the softreload_local tag): several agents on one machine
	// then each bind their own ports, as pods with their own IPs would.
	Rebind func(v1alpha1.ListenAddress) (v1alpha1.ListenAddress, error)
	// ControlSocket, if set, serves `agent status` (and refuses `agent
	// reload`: in a pod, reloads come from the WorkerPool).
	ControlSocket string
	// MetricsAddress, if set, serves /metrics, /healthz and /status.
	MetricsAddress string
	// Stdout and Stderr receive the workers' output (os.Stdout, os.Stderr);
	// NoPrefix leaves out the "[group/slot] " prefix.
	Stdout, Stderr io.Writer
	NoPrefix       bool
	// Logger logs what the engine does; slog.Default() by default.
	Logger *slog.Logger
}

// SupervisorEngine returns the Options.NewEngine of a pod agent: it binds
// the first revision's sockets once and runs its groups in the same runtime
// as standalone mode (agent.Runtime), with its metrics and control socket.
func SupervisorEngine(ctx context.Context, opts EngineOptions) func(first Revision) (Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return func(first Revision) (Engine, error) {
		e := &engine{opts: opts}
		groups, err := e.listen(first.Spec.Groups)
		if err != nil {
			return nil, err
		}
		e.rt, err = agent.NewRuntime(ctx, agent.RuntimeOptions{
			Groups:   groups,
			Strategy: v1alpha1.RolloutStrategy{Replacement: first.Spec.Replacement, MaxSurge: first.Spec.MaxSurge},
			Revision: first.Name, CodeDir: first.Dir, Code: first.Code,
			ControlSocket: opts.ControlSocket, MetricsAddress: opts.MetricsAddress,
			Stdout: opts.Stdout, Stderr: opts.Stderr, NoPrefix: opts.NoPrefix, Logger: opts.Logger,
		})
		if err != nil {
			return nil, err
		}
		return e, nil
	}
}

// engine is the agent's runtime, fed with the pod's revisions.
type engine struct {
	opts EngineOptions
	rt   *agent.Runtime
}

func (e *engine) Run(ctx context.Context) error { return e.rt.Run(ctx, podBackend{e}) }

// RequestReload hands rev to the supervisor, which changes the groups in
// place: counts, addresses, groups added and removed (see docs/agent.md).
func (e *engine) RequestReload(rev Revision) {
	groups, err := e.listen(rev.Spec.Groups)
	if err != nil {
		// Only an address the revision adds can fail to be rebound (a
		// port above 65535 once offset): it is bound as the revision says.
		e.opts.Logger.Error("Cannot rebind the revision's listen addresses, binding them as they are", "revision", rev.Name, "err", err)
		groups = rev.Spec.Groups
	}
	e.rt.Supervisor.RequestReloadTo(supervisor.Target{
		Revision: rev.Name, CodeDir: rev.Dir, Code: rev.Code, Groups: groups,
		Strategy: &v1alpha1.RolloutStrategy{Replacement: rev.Spec.Replacement, MaxSurge: rev.Spec.MaxSurge},
	})
}

// Subscribe delivers the supervisor's statuses, with the open connections
// of the groups that are not reloadable counted every ConnectionsInterval.
func (e *engine) Subscribe() (<-chan v1alpha1.AgentStatus, func()) {
	in, cancel := e.rt.Supervisor.Subscribe()
	return withConnections(in, cancel, e.rt.Supervisor.Status, ConnectionsInterval, e.opts.Logger)
}

// listen returns groups with their listen addresses rebound by Rebind.
func (e *engine) listen(groups []v1alpha1.WorkerGroup) ([]v1alpha1.WorkerGroup, error) {
	if e.opts.Rebind == nil {
		return groups, nil
	}
	out := make([]v1alpha1.WorkerGroup, len(groups))
	for i, g := range groups {
		g = *g.DeepCopy()
		for j, a := range g.Listen {
			moved, err := e.opts.Rebind(a)
			if err != nil {
				return nil, fmt.Errorf("group %q: %w", g.Name, err)
			}
			g.Listen[j] = moved
		}
		out[i] = g
	}
	return out, nil
}

// podBackend serves the control socket in a pod: status and stop as
// standalone, but reloads belong to the WorkerPool.
type podBackend struct{ e *engine }

var errReloadInPod = fmt.Errorf("%w: in a pod, reloads come from the WorkerPool: change its code, or run kubectl softreload reload POOL", control.ErrReloadRefused)

func (b podBackend) Reload(context.Context) (v1alpha1.AgentStatus, error) {
	return b.e.rt.Supervisor.Status().Agent, errReloadInPod
}
func (b podBackend) RequestReload() error      { return errReloadInPod }
func (b podBackend) Status() supervisor.Status { return b.e.rt.Status() }
func (b podBackend) Stop()                     { b.e.rt.Supervisor.Stop() }
