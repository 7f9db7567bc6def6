package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/metrics"
	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/agent/sockets"
	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/api/v1alpha1"
)

// RuntimeOptions configure a Runtime. Zero values mean the defaults.
type RuntimeOptions struct {
	// Groups and Strategy are the worker groups and how they are replaced.
	Groups   []v1alpha1.WorkerGroup
	Strategy v1alpha1.RolloutStrategy
	// Revision and CodeDir are what the workers start with; Code, if set,
	// says what that code is (supervisor.Target.Code).
	Revision, CodeDir, Code string
	// ControlSocket and MetricsAddress, when set, are where the control
	// API and the metrics (/metrics, /healthz, /status) are served.
	ControlSocket, MetricsAddress string
	// Shim, Stdout, Stderr and NoPrefix are process.Options'.
	Shim           string
	Stdout, Stderr io.Writer
	NoPrefix       bool
	// BackoffInitial and BackoffMax bound crash restarts (1s, 30s).
	BackoffInitial, BackoffMax time.Duration
	// Logger logs what the supervisor does; slog.Default() by default.
	Logger *slog.Logger
}

// Runtime is what runs worker groups, standalone as in a pod: their
// sockets, each address bound once (and closed when no group listens on it
// any more); the supervisor that starts and replaces the workers,
// and its metrics; the control and metrics listeners.
type Runtime struct {
	// Supervisor is the reload engine.
	Supervisor *supervisor.Supervisor

	sockets  *sockets.Set
	os       *process.OS
	metrics  *metrics.Metrics
	control  net.Listener
	metricsL net.Listener
}

// NewRuntime binds the sockets and the listeners and prepares the workers;
// Run starts them. Errors name what failed (the group and address of a
// socket, the control socket, the metrics address); nothing stays bound
// after one.
func NewRuntime(ctx context.Context, opts RuntimeOptions) (*Runtime, error) {
	r := &Runtime{}
	ok := false
	defer func() {
		if !ok {
			r.close()
		}
	}()
	var err error
	if r.sockets, err = sockets.Bind(ctx, opts.Groups); err != nil {
		return nil, err
	}
	if r.os, err = process.New(process.Options{
		Shim: opts.Shim, Stdout: opts.Stdout, Stderr: opts.Stderr, NoPrefix: opts.NoPrefix,
	}); err != nil {
		return nil, err
	}
	r.metrics = metrics.New(r.Status)
	if r.Supervisor, err = supervisor.New(supervisor.Options{
		Groups: opts.Groups, Strategy: opts.Strategy, Listeners: r.sockets.Files(), Sockets: r.sockets,
		Revision: opts.Revision, CodeDir: opts.CodeDir, Code: opts.Code, OS: r.os, Recorder: r.metrics, Logger: opts.Logger,
		BackoffInitial: opts.BackoffInitial, BackoffMax: opts.BackoffMax,
	}); err != nil {
		return nil, err
	}
	if opts.ControlSocket != "" {
		if r.control, err = control.Listen(opts.ControlSocket); err != nil {
			return nil, err
		}
	}
	if opts.MetricsAddress != "" {
		if r.metricsL, err = net.Listen("tcp", opts.MetricsAddress); err != nil {
			return nil, fmt.Errorf("metrics address %s: %w", opts.MetricsAddress, err)
		}
	}
	ok = true
	return r, nil
}

// Run serves b on the control socket and the metrics address, and runs the
// workers until the supervisor stops or ctx is done; then it drains them,
// stops serving and releases everything.
func (r *Runtime) Run(ctx context.Context, b control.Backend) error {
	defer r.close()
	shutdown := control.Serve(b, r.control, r.metricsL, r.metrics.Handler())
	defer shutdown()
	return r.Supervisor.Run(ctx)
}

// Status is the supervisor's status with each worker's memory and the open
// connections of each group that is not reloadable.
func (r *Runtime) Status() supervisor.Status {
	st, _ := process.WithConnections(process.WithMemory(r.Supervisor.Status()))
	return st
}

// Addrs returns the bound addresses of a group, in the listen order of the
// spec it runs: with port 0 in the config, the port the system chose.
func (r *Runtime) Addrs(group string) []net.Addr {
	var out []net.Addr
	for _, g := range r.Supervisor.Status().Groups {
		if g.Name != group {
			continue
		}
		for _, a := range g.Listen {
			if addr := r.sockets.Addr(a); addr != nil {
				out = append(out, addr)
			}
		}
	}
	return out
}

func (r *Runtime) close() {
	for _, l := range []net.Listener{r.control, r.metricsL} {
		if l != nil {
			_ = l.Close()
		}
	}
	if r.sockets != nil {
		_ = r.sockets.Close()
	}
	if r.os != nil {
		_ = r.os.Close()
	}
}
