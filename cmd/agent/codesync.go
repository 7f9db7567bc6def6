package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/softreload/softreload/agent"
	"github.com/softreload/softreload/agent/pod"
)

// newCodeSyncCmd is `agent code-sync`: what the code container of image
// mode runs each time it starts. It copies the code of the image it runs
// into the shared code volume, whole or not at all, where the agent looks
// for that image, then waits: the container stays up until the controller
// patches its image, and the kubelet starts it again with the new image and
// the annotations that name it.
func newCodeSyncCmd() *cobra.Command {
	var root, image, path string
	cmd := &cobra.Command{
		Use:   "code-sync --root DIR",
		Short: "Copy a code image's files into the code volume, then wait (the code container of image mode)",
		Long: `Copy a code image's files into the code volume, then wait.

The code container of image mode runs it. It learns which image it runs and
where the code is in it from ` + pod.EnvCodeImage + ` and ` + pod.EnvCodePath + `, which the
downward API sets from the pod's annotations each time the container starts.
Code of that image delivered before must be the same, or it fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := pod.DeliverImage(root, image, path)
			if err != nil {
				return err
			}
			// Wait for the kubelet's SIGTERM; no other signal ends it.
			ctx, drain := context.WithCancel(cmd.Context())
			defer drain()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			stop := agent.HandleSignals(log, agent.SignalHandlers{
				Drain:    drain,
				NoReload: "the code container delivers its image's code each time it starts; a new image restarts it",
			})
			defer stop()
			fmt.Fprintf(cmd.OutOrStdout(), "the code of image %s (%s) is in %s\n", image, path, dir)
			<-ctx.Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&root, "root", "", "the code volume, where the agent looks for the code")
	f.StringVar(&image, "image", os.Getenv(pod.EnvCodeImage), "the image this container runs (default: $"+pod.EnvCodeImage+")")
	f.StringVar(&path, "from", os.Getenv(pod.EnvCodePath), "the code's directory in this container (default: $"+pod.EnvCodePath+")")
	_ = cmd.MarkFlagRequired("root")
	return cmd
}
