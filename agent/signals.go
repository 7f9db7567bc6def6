package agent

import (
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/softreload/softreload/agent/process"
)

// What the agent does with a signal, standalone and in a pod (docs/agent.md
// has the table). Go ends a program on SIGHUP, SIGINT, SIGTERM, SIGQUIT and
// a few others unless it handles them, and as PID 1 the kernel does not
// protect a process that has handlers: every signal that would end the
// agent by accident is handled here.
var (
	// drainSignals drain the workers, then the agent exits: SIGTERM is
	// what the kubelet sends, SIGINT is ^C, and SIGQUIT is the graceful
	// stop of Workerman and nginx (the STOPSIGNAL of some images).
	drainSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT}
	// reloadSignals reload the code standalone (Workerman's SIGUSR1,
	// SIGHUP as many daemons); in a pod, reloads come from the WorkerPool
	// and these are logged and ignored.
	reloadSignals = []os.Signal{syscall.SIGHUP, syscall.SIGUSR1}
	// forwardSignals are passed on to every worker: the application's own
	// signal (reopen logs, dump state), which the agent has no use for.
	forwardSignals = []os.Signal{syscall.SIGUSR2}
	// ignoredSignals would end the agent, and mean nothing to it when
	// another process sends them. SIGPIPE comes when a reader of the
	// agent's output goes away: writes then fail instead, silently.
	ignoredSignals = []os.Signal{syscall.SIGPIPE, syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGSTKFLT}
)

// SignalHandlers say what the agent does on the signals it handles.
type SignalHandlers struct {
	// Drain is called on SIGTERM, SIGINT and SIGQUIT: drain the workers
	// and exit. Required.
	Drain func()
	// Reload is called on SIGHUP and SIGUSR1. If nil, these are logged
	// with NoReload, the reason, and ignored.
	Reload   func()
	NoReload string
}

// HandleSignals handles the agent's signals, as SignalHandlers and the
// variables above say, until stop is called: SIGUSR2 goes to every worker,
// and the others that would end the agent are ignored.
func HandleSignals(log *slog.Logger, h SignalHandlers) (stop func()) {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, drainSignals...)
	signal.Notify(sigs, reloadSignals...)
	signal.Notify(sigs, forwardSignals...)
	signal.Notify(sigs, ignoredSignals...)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				handleSignal(log, h, sig)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

func handleSignal(log *slog.Logger, h SignalHandlers, sig os.Signal) {
	switch {
	case slices.Contains(drainSignals, sig):
		log.Info("Draining, asked by signal", "signal", sig.String())
		h.Drain()
	case slices.Contains(reloadSignals, sig) && h.Reload != nil:
		log.Info("Reload asked by signal", "signal", sig.String())
		h.Reload()
	case slices.Contains(reloadSignals, sig):
		log.Info("Ignoring signal", "signal", sig.String(), "why", h.NoReload)
	case slices.Contains(forwardSignals, sig):
		log.Info("Passing signal on to the workers", "signal", sig.String(), "pids", process.SignalWorkers(sig))
	case sig == syscall.SIGPIPE:
		// Logging it could raise it again.
	default:
		log.Info("Ignoring signal", "signal", sig.String(), "why", "it means nothing to the agent")
	}
}
