// Command agent is softreload's agent: the master process that owns the
// listening sockets and replaces worker processes one at a time.
//
//	agent run --config pool.yaml     start the workers and supervise them
//	agent reload                     reload the code (also: SIGHUP, SIGUSR1)
//	agent status [--json]            print the workers
//	agent stop                       drain the workers and exit (also: SIGTERM)
//	agent pod                        in a pod: follow the pod protocol
//	agent install DEST               copy this binary (the injected init container)
//	agent code-sync --root DIR       deliver a code image's files (image mode)
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/softreload/softreload/agent"
	"github.com/softreload/softreload/agent/config"
	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/process"
)

func main() {
	process.RunShimIfAsked()
	tuneRuntime()
	if err := newRoot().Execute(); err != nil {
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var cfgPath, socket string
	root := &cobra.Command{
		Use:           "agent",
		Short:         "Run worker processes and reload them one at a time, without refusing a connection",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.PersistentFlags().StringVarP(&cfgPath, "config", "c", "softreload.yaml", "the pool's config file")
	root.PersistentFlags().StringVar(&socket, "socket", os.Getenv("SOFTRELOAD_SOCKET"), "the control socket (default: the config's controlSocket)")

	// client finds the running agent from --socket or the config.
	client := func() (*control.Client, error) {
		if socket != "" {
			return control.NewClient(socket), nil
		}
		c, err := config.Load(cfgPath)
		if err != nil {
			return nil, err
		}
		return control.NewClient(c.ControlSocket), nil
	}

	var verbose bool
	run := &cobra.Command{
		Use:   "run",
		Short: "Start the worker groups and supervise them until stopped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := config.Load(cfgPath)
			if err != nil {
				return err
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			a, err := agent.New(cmd.Context(), agent.Options{Config: c, Logger: log, Signals: true})
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	run.Flags().BoolVarP(&verbose, "verbose", "v", false, "log more")

	var noWait bool
	reload := &cobra.Command{
		Use:   "reload",
		Short: "Reload the workers to the code directory as it is now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := client()
			if err != nil {
				return err
			}
			r, err := cl.Reload(cmd.Context(), !noWait)
			if err != nil {
				return err
			}
			if r.Error != "" {
				return fmt.Errorf("reload to %s failed, the workers run %s: %s", r.Status.Revision, r.Status.Running, r.Error)
			}
			if noWait {
				fmt.Fprintln(cmd.OutOrStdout(), "reload asked")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reloaded: revision %s, %d/%d workers ready\n", r.Status.Running, r.Status.Ready, r.Status.Total)
			return nil
		},
	}
	reload.Flags().BoolVar(&noWait, "no-wait", false, "return as soon as the reload is asked")

	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the workers (group, slot, pid, revision, state, uptime, restarts, memory) and how stopped workers drained",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := client()
			if err != nil {
				return err
			}
			st, err := cl.Status(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return control.WriteTable(cmd.OutOrStdout(), st, time.Now())
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	stop := &cobra.Command{
		Use:   "stop",
		Short: "Drain the workers and stop the agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := client()
			if err != nil {
				return err
			}
			if err := cl.Stop(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "stopping")
			return nil
		},
	}
	root.AddCommand(run, reload, status, stop, newPodCmd(), newInstallCmd(), newCodeSyncCmd())
	root.SetContext(context.Background())
	return root
}
