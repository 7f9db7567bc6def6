package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/softreload/softreload/agent"
	"github.com/softreload/softreload/agent/pod"
	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/api/v1alpha1"
)

// newPodCmd is `agent pod`: the agent as the entrypoint of a pod's
// container, following the pod protocol.
func newPodCmd() *cobra.Command {
	var (
		kubeconfig string
		engine     pod.EngineOptions
		noPrefix   bool
		verbose    bool
	)
	cmd := &cobra.Command{
		Use:   "pod",
		Short: "Run the pool's workers in this pod at the revision the controller asks for (the pod protocol)",
		Long: `Run the pool's workers in this pod at the revision the controller asks for.

The agent reads POD_NAME and POD_NAMESPACE (the downward API), SOFTRELOAD_POOL
and SOFTRELOAD_CODE_ROOT from its environment; the injection webhook sets them.
It reaches the API server with the pod's service account, or with --kubeconfig.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			// As the container's PID 1, no signal may end the agent and
			// its workers by accident (docs/agent.md has the table).
			ctx, drain := context.WithCancel(cmd.Context())
			defer drain()
			stopSignals := agent.HandleSignals(log, agent.SignalHandlers{Drain: drain, NoReload: errReloadInPod})
			defer stopSignals()
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("reaching the API server: %w", err)
			}
			cfg.UserAgent = "softreload-agent"
			client, err := pod.NewClient(cfg)
			if err != nil {
				return err
			}
			if localRebind != nil {
				if engine.Rebind, err = localRebind(); err != nil {
					return err
				}
			}
			engine.NoPrefix, engine.Logger = noPrefix, log
			root := os.Getenv(pod.EnvCodeRoot)
			if engine.ControlSocket == "" && root != "" {
				engine.ControlSocket = filepath.Join(root, "agent.sock")
			}

			if os.Getpid() == 1 {
				// The container's PID 1: orphans of the workers are ours.
				_ = process.BecomeSubreaper()
				process.ReapOrphans()
			}
			a, err := pod.New(pod.Options{
				Client:    client,
				Namespace: os.Getenv(pod.EnvPodNamespace),
				PodName:   os.Getenv(pod.EnvPodName),
				Pool:      os.Getenv(pod.EnvPool),
				CodeRoot:  root,
				NewEngine: pod.SupervisorEngine(ctx, engine),
				Logger:    log,
			})
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "a kubeconfig to reach the API server with (default: the pod's service account)")
	f.StringVar(&engine.MetricsAddress, "metrics-address", os.Getenv("SOFTRELOAD_METRICS_ADDRESS"), "serve /metrics, /healthz and /status on this address (default: none)")
	f.StringVar(&engine.ControlSocket, "control-socket", os.Getenv("SOFTRELOAD_SOCKET"), "serve agent status on this unix socket (default: agent.sock in the code root)")
	f.BoolVar(&noPrefix, "no-prefix", false, "pass the workers' output through without the [group/slot] prefix")
	f.BoolVarP(&verbose, "verbose", "v", false, "log more")
	return cmd
}

// errReloadInPod says why `agent pod` ignores the reload signals.
const errReloadInPod = "in a pod, reloads come from the WorkerPool: change its code, or run kubectl softreload reload POOL"

// localRebind, set only in the agent that softreload's local mode builds
// (the softreload_local build tag, local.go), gives where each pod's agent
// binds the pool's listen addresses; the production agent binds them as
// the pool says.
var localRebind func() (func(v1alpha1.ListenAddress) (v1alpha1.ListenAddress, error), error)

// newInstallCmd is `agent install DEST`: what the injected init container
// runs to put the agent into the pod's shared bin volume.
func newInstallCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "install DEST",
		Short: "Copy this agent binary to DEST (the injected init container runs it)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if err := copyExecutable(self, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "installed the agent at %s\n", args[0])
			return nil
		},
	}
}

// copyExecutable copies from to dest atomically: a temporary file renamed
// into place.
func copyExecutable(from, dest string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	out, err := os.CreateTemp(filepath.Dir(dest), ".agent-")
	if err != nil {
		return fmt.Errorf("installing into %s: %w", filepath.Dir(dest), err)
	}
	defer os.Remove(out.Name()) // a no-op once renamed
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("installing %s: %w", dest, err)
	}
	if err := out.Chmod(0o755); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(out.Name(), dest)
}
