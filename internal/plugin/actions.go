package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

func newReloadCommand(r *runner) *cobra.Command {
	return &cobra.Command{
		Use:   "reload POOL",
		Short: "Reload every pod's workers with unchanged code",
		Long: `reload asks for a new revision with the same code, like kubectl rollout restart:
it sets the pool's ` + workersv1alpha1.RestartedAtAnnotation + ` annotation to now, and the controller
rolls the new revision over the pods within the pool's budget, replacing
each reloadable worker without restarting the pod.`,
		Example:           `  kubectl softreload reload web`,
		Args:              poolArg,
		ValidArgsFunction: r.completePools,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := r.connect()
			if err != nil {
				return err
			}
			return s.reload(cmd.Context(), args[0])
		},
	}
}

func (s *session) reload(ctx context.Context, name string) error {
	return s.requestAt(ctx, name, workersv1alpha1.RestartedAtAnnotation, "reload", nil)
}

func newReplacePodsCommand(r *runner) *cobra.Command {
	return &cobra.Command{
		Use:   "replace-pods POOL",
		Short: "Replace every pod of a pool through the Eviction API, within its budget",
		Long: `replace-pods asks the controller to replace the pool's pods, like kubectl rollout
restart but through the Eviction API: it sets the pool's ` + workersv1alpha1.ReplacePodsAtAnnotation + `
annotation to now, and the controller evicts every pod created before that
time, at most maxUnavailable at a time and as their PodDisruptionBudgets
allow, each time waiting until the new pods that their workload makes report
the pool's revision ready. Use it for what a reload cannot change: a group
that is not reloadable kept at an older spec (kubectl softreload status says
"needs a new pod"), or the pod itself. Pods created later are left alone, so
the request is done once every pod is newer than it.`,
		Example:           `  kubectl softreload replace-pods web`,
		Args:              poolArg,
		ValidArgsFunction: r.completePools,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := r.connect()
			if err != nil {
				return err
			}
			return s.replacePods(cmd.Context(), args[0])
		},
	}
}

func (s *session) replacePods(ctx context.Context, name string) error {
	return s.requestAt(ctx, name, workersv1alpha1.ReplacePodsAtAnnotation, "pod replacement", func(wp *workersv1alpha1.WorkerPool) string {
		return fmt.Sprintf("the %d pods created before it are evicted, %s at a time", wp.Status.Pods, budgetOf(wp))
	})
}

// requestAt sets the pool's annotation to now (UTC, to the second), as
// kubectl rollout restart does, and says so: what names the request, and
// then, when set, what follows from it for the pool. A request of the same
// second is not made twice.
func (s *session) requestAt(ctx context.Context, name, annotation, what string, then func(*workersv1alpha1.WorkerPool) string) error {
	wp, err := s.pool(ctx, name)
	if err != nil {
		return err
	}
	at := s.now().UTC().Format(time.RFC3339)
	if wp.Annotations[annotation] == at {
		_, err := fmt.Fprintf(s.streams.Out, "%s %s already requested at %s\n", ref(name), what, at)
		return err
	}
	if err := s.annotate(ctx, wp, annotation, at); err != nil {
		return err
	}
	line := fmt.Sprintf("%s %s requested (%s=%s)", ref(name), what, annotation, at)
	if then != nil {
		line += ": " + then(wp)
	}
	if _, err := fmt.Fprintln(s.streams.Out, line); err != nil {
		return err
	}
	return s.warnIfPaused(wp)
}

// budgetOf says how many pods the pool replaces at once.
func budgetOf(wp *workersv1alpha1.WorkerPool) string {
	if m := wp.Spec.Strategy.MaxUnavailable; m != nil {
		return "at most " + m.String()
	}
	return "at most 1"
}

func newPauseCommand(r *runner, pause bool) *cobra.Command {
	cmd := &cobra.Command{
		Use:               "pause POOL",
		Short:             "Hold a pool's rollout where it is",
		Long:              "pause sets spec.paused: no pod moves to a new revision until the pool is resumed.\nPods keep running what they run, and their agents keep their workers up.",
		Example:           "  kubectl softreload pause web",
		Args:              poolArg,
		ValidArgsFunction: r.completePools,
	}
	if !pause {
		cmd.Use, cmd.Short, cmd.Example = "resume POOL", "Let a paused pool's rollout go on", "  kubectl softreload resume web"
		cmd.Long = "resume clears spec.paused: the controller goes on rolling the pool's update\nrevision over its pods."
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		s, err := r.connect()
		if err != nil {
			return err
		}
		return s.setPaused(cmd.Context(), args[0], pause)
	}
	return cmd
}

func (s *session) setPaused(ctx context.Context, name string, pause bool) error {
	wp, err := s.pool(ctx, name)
	if err != nil {
		return err
	}
	if wp.Spec.Paused == pause {
		msg := "already paused"
		if !pause {
			msg = "is not paused"
		}
		_, err := fmt.Fprintf(s.streams.Out, "%s %s\n", ref(name), msg)
		return err
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"paused": pause}})
	if err != nil {
		return err
	}
	if err := s.c.Patch(ctx, wp, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("setting spec.paused=%t on workerpool %q in namespace %q: %w", pause, name, s.ns, err)
	}
	msg := "paused"
	if !pause {
		msg = "resumed"
	}
	_, err = fmt.Fprintf(s.streams.Out, "%s %s\n", ref(name), msg)
	return err
}

func newRollbackCommand(r *runner) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "rollback POOL [--to REV]",
		Short: "Roll a pool's pods back to an earlier revision",
		Long: `rollback asks the controller to move every pod back to an earlier revision
whose snapshot is still kept, by setting the pool's ` + workersv1alpha1.RollbackToAnnotation + ` annotation.
Without --to it picks the newest revision older than the current one that
completed on every pod and still has a snapshot (kubectl softreload history
shows which). The rollback holds until the code or the spec changes again.`,
		Example: `  kubectl softreload rollback web
  kubectl softreload rollback web --to 5d8f7c9b1a`,
		Args:              poolArg,
		ValidArgsFunction: r.completePools,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("to") && to == "" {
				return fmt.Errorf("--to needs a revision name; kubectl softreload history %s lists them", args[0])
			}
			s, err := r.connect()
			if err != nil {
				return err
			}
			return s.rollback(cmd.Context(), args[0], to)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "Revision to roll back to (default: the newest completed revision before the current one that still has a snapshot)")
	if err := cmd.RegisterFlagCompletionFunc("to", r.completeRollbackTargets); err != nil {
		panic(err) // only if the flag above is missing
	}
	return cmd
}

func (s *session) rollback(ctx context.Context, name, to string) error {
	wp, err := s.pool(ctx, name)
	if err != nil {
		return err
	}
	kept, err := s.keptSnapshots(ctx, name)
	if err != nil {
		return err
	}
	if to == "" {
		if to, err = defaultRollbackTarget(wp.Status, kept); err != nil {
			return fmt.Errorf("workerpool %q in namespace %q: %w", name, s.ns, err)
		}
	} else if err := checkRollbackTarget(wp.Status, kept, to); err != nil {
		return fmt.Errorf("cannot roll workerpool %q in namespace %q back: %w", name, s.ns, err)
	}
	st := wp.Status
	if to == st.CurrentRevision && (st.UpdateRevision == "" || st.UpdateRevision == to) {
		_, err := fmt.Fprintf(s.streams.Out, "%s already runs revision %s; nothing to roll back\n", ref(name), to)
		return err
	}
	if wp.Annotations[workersv1alpha1.RollbackToAnnotation] == to {
		_, err := fmt.Fprintf(s.streams.Out, "%s rollback to revision %s already requested\n", ref(name), to)
		return err
	}
	if err := s.annotate(ctx, wp, workersv1alpha1.RollbackToAnnotation, to); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.streams.Out, "%s rolling back to revision %s (current revision %s)\n", ref(name), to, orNone(st.CurrentRevision)); err != nil {
		return err
	}
	if rec, ok := newestRecord(st, to); ok && rec.CompletedAt == nil {
		result := "no result"
		if rec.Result != "" {
			result = rec.Result
		}
		if _, err := fmt.Fprintf(s.streams.ErrOut, "Warning: revision %s never completed on every pod (%s)\n", to, result); err != nil {
			return err
		}
	}
	return s.warnIfPaused(wp)
}

// annotate sets one annotation on a pool with a merge patch, which leaves
// every other field as it is.
func (s *session) annotate(ctx context.Context, wp *workersv1alpha1.WorkerPool, key, value string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		return err
	}
	if err := s.c.Patch(ctx, wp, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("setting %s on workerpool %q in namespace %q: %w", key, wp.Name, s.ns, err)
	}
	return nil
}

// warnIfPaused tells the user that a paused pool holds what they asked for.
func (s *session) warnIfPaused(wp *workersv1alpha1.WorkerPool) error {
	if !wp.Spec.Paused {
		return nil
	}
	_, err := fmt.Fprintf(s.streams.ErrOut, "Warning: %s is paused: no pod moves until kubectl softreload resume %s\n", ref(wp.Name), wp.Name)
	return err
}

// newestRecord is the newest history record of a revision.
func newestRecord(st workersv1alpha1.WorkerPoolStatus, rev string) (workersv1alpha1.RevisionRecord, bool) {
	for _, rec := range st.History {
		if rec.Revision == rev {
			return rec, true
		}
	}
	return workersv1alpha1.RevisionRecord{}, false
}
