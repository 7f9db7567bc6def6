package plugin

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// Version is the plugin's version, set at build time with
// -ldflags "-X github.com/softreload/softreload/internal/plugin.Version=v0.1.0".
var Version = "dev"

// Options are what the command tree needs from its caller. The zero value
// writes nowhere and reads the wall clock.
type Options struct {
	// Streams are where the commands read and write.
	Streams genericiooptions.IOStreams
	// Now is the clock: the value of a reload request and the origin of the
	// ages shown. Nil means time.Now.
	Now func() time.Time
}

// Main runs kubectl softreload with args (the command line less the
// program's name) and returns its exit code: 0, or 1 once the error is
// written to the error stream as "error: ...", as kubectl's commands do.
func Main(ctx context.Context, streams genericiooptions.IOStreams, args []string) int {
	cmd := NewCommand(Options{Streams: streams})
	cmd.SetArgs(append([]string{}, args...)) // never nil: cobra would read os.Args
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "error:", err)
		return 1
	}
	return 0
}

// NewCommand returns kubectl softreload with all its subcommands.
func NewCommand(opts Options) *cobra.Command {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Streams.Out == nil {
		opts.Streams.Out = io.Discard
	}
	if opts.Streams.ErrOut == nil {
		opts.Streams.ErrOut = io.Discard
	}
	flags := genericclioptions.NewConfigFlags(true).WithWarningPrinter(opts.Streams)
	r := &runner{flags: flags, streams: opts.Streams, now: opts.Now}

	root := &cobra.Command{
		Use:   "softreload",
		Short: "Inspect and steer softreload WorkerPools",
		Long: `kubectl softreload shows how a WorkerPool's revisions roll over its pods and
asks the softreload controller to reload, pause, resume or roll back a pool,
or to replace its pods.
It writes only the WorkerPool; the controller and the agents in the pods do
the rest.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl softreload"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(opts.Streams.In)
	root.SetOut(opts.Streams.Out)
	root.SetErr(opts.Streams.ErrOut)
	flags.AddFlags(root.PersistentFlags())

	root.AddCommand(
		newStatusCommand(r),
		newHistoryCommand(r),
		newReloadCommand(r),
		newPauseCommand(r, true),
		newPauseCommand(r, false),
		newRollbackCommand(r),
		newReplacePodsCommand(r),
		&cobra.Command{
			Use:   "version",
			Short: "Print the plugin's version",
			Args:  cobra.NoArgs,
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), Version) },
		},
	)
	return root
}

// runner holds what every subcommand shares.
type runner struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
	now     func() time.Time
}

// session is a connected runner: a client and the namespace to work in.
type session struct {
	*runner
	c  client.Client
	ns string
}

func (r *runner) connect() (*session, error) {
	ns, _, err := r.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	cfg, err := r.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server %s: %w", cfg.Host, err)
	}
	return &session{runner: r, c: c, ns: ns}, nil
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := workersv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// pool reads a WorkerPool, with an error a user can act on when it is not
// there.
func (s *session) pool(ctx context.Context, name string) (*workersv1alpha1.WorkerPool, error) {
	var wp workersv1alpha1.WorkerPool
	err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: name}, &wp)
	switch {
	case err == nil:
		return &wp, nil
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("workerpool %q not found in namespace %q", name, s.ns)
	case meta.IsNoMatchError(err):
		return nil, fmt.Errorf("the WorkerPool API (%s) is not served by this cluster: is softreload installed?", workersv1alpha1.GroupVersion)
	default:
		return nil, fmt.Errorf("reading workerpool %q in namespace %q: %w", name, s.ns, err)
	}
}

// poolArg checks that a command got exactly one pool name.
func poolArg(cmd *cobra.Command, args []string) error {
	switch len(args) {
	case 1:
		if args[0] == "" {
			return fmt.Errorf("the WorkerPool name is empty; usage: %s", cmd.UseLine())
		}
		return nil
	case 0:
		return fmt.Errorf("a WorkerPool name is required; usage: %s", cmd.UseLine())
	default:
		return fmt.Errorf("one WorkerPool name expected, got %d (%v); usage: %s", len(args), args, cmd.UseLine())
	}
}

// ref names a pool the way kubectl names what it changed.
func ref(name string) string { return "workerpool/" + name }
