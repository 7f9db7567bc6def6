package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/softreload/softreload/agent/codedir"
	"github.com/softreload/softreload/agent/config"
	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/api/v1alpha1"
)

// Options configures an Agent. Zero values mean the defaults.
type Options struct {
	// Config is the loaded config. Required.
	Config *config.Config
	// Stdout and Stderr receive the workers' output (os.Stdout, os.Stderr).
	Stdout, Stderr io.Writer
	// Logger logs what the agent does (slog.Default()).
	Logger *slog.Logger
	// Shim is the binary that starts workers (/proc/self/exe); it must call
	// process.RunShimIfAsked.
	Shim string
	// Signals makes Run handle the signals (HandleSignals): SIGHUP and
	// SIGUSR1 reload; SIGTERM, SIGINT and SIGQUIT drain and return; SIGUSR2
	// goes to every worker; none ends the agent by accident.
	Signals bool
	// ReapOrphans makes the agent a subreaper that reaps every orphan; it is
	// always on when the agent is PID 1.
	ReapOrphans bool
	// BackoffInitial and BackoffMax bound crash restarts (1s, 30s).
	BackoffInitial, BackoffMax time.Duration
}

// Agent runs one pool of worker groups.
type Agent struct {
	opts Options
	cfg  *config.Config
	log  *slog.Logger
	rt   *Runtime

	snapMu sync.Mutex
}

// New snapshots the code, binds the sockets and prepares the workers; Run
// starts them. Errors name what failed: the code directory, the group and
// address of a socket, the control socket, the metrics address.
func New(ctx context.Context, opts Options) (*Agent, error) {
	if opts.Config == nil {
		return nil, errors.New("agent: Options.Config is required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &Agent{opts: opts, cfg: opts.Config, log: opts.Logger}
	rev, dir, err := codedir.Snapshot(a.cfg.CodeDir, a.cfg.StateDir)
	if err != nil {
		return nil, err
	}
	a.rt, err = NewRuntime(ctx, RuntimeOptions{
		Groups: a.cfg.Groups, Strategy: a.cfg.Strategy, Revision: rev, CodeDir: dir,
		ControlSocket: a.cfg.ControlSocket, MetricsAddress: a.cfg.MetricsAddress,
		Shim: opts.Shim, Stdout: opts.Stdout, Stderr: opts.Stderr, NoPrefix: !*a.cfg.PrefixOutput,
		BackoffInitial: opts.BackoffInitial, BackoffMax: opts.BackoffMax, Logger: a.log,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Run starts the workers and serves until Stop, a SIGTERM (with
// Options.Signals) or the end of ctx; then it drains every worker and
// returns nil.
func (a *Agent) Run(ctx context.Context) error {
	if os.Getpid() == 1 || a.opts.ReapOrphans {
		if err := process.BecomeSubreaper(); err != nil && os.Getpid() != 1 {
			a.log.Warn("Could not become a subreaper", "err", err)
		}
		process.ReapOrphans()
	}
	if a.opts.Signals {
		stop := HandleSignals(a.log, SignalHandlers{Drain: a.Stop, Reload: func() {
			if err := a.RequestReload(); err != nil {
				a.log.Error("Reload failed", "err", err)
			}
		}})
		defer stop()
	}
	a.log.Info("Agent started", "revision", a.rt.Supervisor.Status().Agent.Revision, "control", a.cfg.ControlSocket, "metrics", a.cfg.MetricsAddress)
	err := a.rt.Run(ctx, a)
	a.log.Info("Agent stopped")
	return err
}

// snapshot makes the revision of the code directory now, and prunes old
// snapshots.
func (a *Agent) snapshot() (rev, dir string, err error) {
	a.snapMu.Lock()
	defer a.snapMu.Unlock()
	rev, dir, err = codedir.Snapshot(a.cfg.CodeDir, a.cfg.StateDir)
	if err != nil {
		return "", "", err
	}
	inUse := []string{rev}
	for _, w := range a.rt.Supervisor.Status().Workers {
		inUse = append(inUse, w.Revision)
	}
	if err := codedir.Prune(a.cfg.StateDir, a.cfg.KeepRevisions, inUse...); err != nil {
		a.log.Warn("Could not prune old revisions", "err", err)
	}
	return rev, dir, nil
}

// Reload reads the config file again, snapshots the code directory and
// reloads the workers to both, returning when the reload is over (see
// supervisor.ReloadTo): the code, and the groups and the strategy of the
// config.
func (a *Agent) Reload(ctx context.Context) (v1alpha1.AgentStatus, error) {
	t, err := a.target()
	if err != nil {
		return a.Status().Agent, err
	}
	return a.rt.Supervisor.ReloadTo(ctx, t)
}

// RequestReload starts a reload like Reload, and returns at once.
func (a *Agent) RequestReload() error {
	t, err := a.target()
	if err != nil {
		return err
	}
	a.rt.Supervisor.RequestReloadTo(t)
	return nil
}

// target is what a reload goes to: the code directory now and, for a
// config read from a file, the groups and the strategy the file says now.
// A config file that no longer loads, or that changes what only a restart
// applies, fails the reload before anything changes.
func (a *Agent) target() (supervisor.Target, error) {
	var t supervisor.Target
	if a.cfg.File != "" {
		next, err := config.Reread(a.cfg)
		if err != nil {
			return t, fmt.Errorf("reload: %w", err)
		}
		t.Groups, t.Strategy = next.Groups, &next.Strategy
	}
	var err error
	if t.Revision, t.CodeDir, err = a.snapshot(); err != nil {
		return t, err
	}
	return t, nil
}

// Status returns the supervisor's status, with each worker's memory.
func (a *Agent) Status() supervisor.Status { return a.rt.Status() }

// Stop drains the workers; Run then returns.
func (a *Agent) Stop() { a.rt.Supervisor.Stop() }

// Supervisor is the reload engine, for a caller that brings its own
// revisions (the Kubernetes pod watcher).
func (a *Agent) Supervisor() *supervisor.Supervisor { return a.rt.Supervisor }

// Addrs returns the bound addresses of a group, in listen order.
func (a *Agent) Addrs(group string) []net.Addr { return a.rt.Addrs(group) }
