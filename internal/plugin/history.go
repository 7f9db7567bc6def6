package plugin

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// maxSource is how many characters of a revision's source fit a table.
const maxSource = 64

// HistoryReport is what history writes with -o json or -o yaml.
type HistoryReport struct {
	// Name and Namespace of the pool.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// CurrentRevision and UpdateRevision are the pool's, from its status.
	CurrentRevision string `json:"currentRevision,omitempty"`
	UpdateRevision  string `json:"updateRevision,omitempty"`
	// RollbackTo is the revision a pending rollback asks for, if any.
	RollbackTo string `json:"rollbackTo,omitempty"`
	// DefaultRollbackTarget is where rollback without --to would go, if
	// anywhere.
	DefaultRollbackTarget string `json:"defaultRollbackTarget,omitempty"`
	// Revisions are the pool's history, newest first.
	Revisions []HistoryEntry `json:"revisions"`
	// OtherSnapshots are kept snapshots of revisions that the history no
	// longer lists; they can be rolled back to as well.
	OtherSnapshots []string `json:"otherSnapshots,omitempty"`
}

// HistoryEntry is one revision of the history and whether it can still be
// rolled back to.
type HistoryEntry struct {
	workersv1alpha1.RevisionRecord `json:",inline"`
	// Snapshot is the name of the revision's snapshot ConfigMap while it is
	// kept; a revision without one cannot be rolled back to.
	Snapshot string `json:"snapshot,omitempty"`
}

func newHistoryCommand(r *runner) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "history POOL",
		Short: "List a pool's revisions and which can be rolled back to",
		Long: `history lists a WorkerPool's recent revisions, newest first: why each was made,
its code source, when it was created and completed, and how it ended. The
SNAPSHOT column says whether its snapshot is still kept, which is what a
rollback needs; the last lines say where rollback without --to would go.`,
		Example: `  kubectl softreload history web
  kubectl softreload history web -o json`,
		Args:              poolArg,
		ValidArgsFunction: r.completePools,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s, err := r.connect()
			if err != nil {
				return err
			}
			return s.history(cmd.Context(), args[0], output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json or yaml (default: a table)")
	return cmd
}

func (s *session) history(ctx context.Context, name, output string) error {
	wp, err := s.pool(ctx, name)
	if err != nil {
		return err
	}
	kept, err := s.keptSnapshots(ctx, name)
	if err != nil {
		return err
	}
	report := historyReport(wp, kept)
	if output != "" {
		return printStructured(s.streams.Out, output, report)
	}
	_, whyNot := defaultRollbackTarget(wp.Status, kept)
	return writeHistory(s.streams.Out, report, whyNot, s.now())
}

// historyReport joins a pool's history with its kept snapshots.
func historyReport(wp *workersv1alpha1.WorkerPool, kept map[string]string) HistoryReport {
	r := HistoryReport{
		Name:            wp.Name,
		Namespace:       wp.Namespace,
		CurrentRevision: wp.Status.CurrentRevision,
		UpdateRevision:  wp.Status.UpdateRevision,
		RollbackTo:      wp.Annotations[workersv1alpha1.RollbackToAnnotation],
		Revisions:       make([]HistoryEntry, 0, len(wp.Status.History)),
	}
	if target, err := defaultRollbackTarget(wp.Status, kept); err == nil {
		r.DefaultRollbackTarget = target
	}
	listed := map[string]bool{}
	for _, rec := range wp.Status.History {
		listed[rec.Revision] = true
		r.Revisions = append(r.Revisions, HistoryEntry{RevisionRecord: rec, Snapshot: kept[rec.Revision]})
	}
	for _, rev := range sortedKeys(kept) {
		if !listed[rev] {
			r.OtherSnapshots = append(r.OtherSnapshots, rev)
		}
	}
	return r
}

// historyRow is a revision's row: REVISION, CAUSE, SOURCE, CREATED,
// COMPLETED, RESULT, SNAPSHOT, NOTE.
func historyRow(r HistoryReport, e HistoryEntry, now time.Time) []string {
	var notes []string
	switch e.Revision {
	case r.CurrentRevision:
		notes = append(notes, "current")
	case r.UpdateRevision:
		notes = append(notes, "rolling out")
	}
	if e.Revision == r.RollbackTo {
		notes = append(notes, "rollback requested")
	}
	if e.Revision == r.DefaultRollbackTarget {
		notes = append(notes, "rollback goes here")
	}
	completed := none
	if e.CompletedAt != nil {
		completed = age(*e.CompletedAt, now)
	}
	snapshot := "gone"
	if e.Snapshot != "" {
		snapshot = "kept"
	}
	return []string{
		e.Revision, orNone(e.Cause), orNone(truncate(e.Source, maxSource)), age(e.CreatedAt, now),
		completed, orNone(e.Result), snapshot, strings.Join(notes, ", "),
	}
}

// writeHistory writes the history table and what rollback can do.
// whyNot says why rollback without --to has nowhere to go, if it has not.
func writeHistory(w io.Writer, r HistoryReport, whyNot error, now time.Time) error {
	if len(r.Revisions) == 0 {
		if _, err := fmt.Fprintf(w, "WorkerPool %s/%s has no revisions in its history yet.\n", r.Namespace, r.Name); err != nil {
			return err
		}
	} else {
		rows := make([][]string, 0, len(r.Revisions))
		for _, e := range r.Revisions {
			rows = append(rows, historyRow(r, e, now))
		}
		if err := table(w, "", []string{"REVISION", "CAUSE", "SOURCE", "CREATED", "COMPLETED", "RESULT", "SNAPSHOT", "NOTE"}, rows); err != nil {
			return err
		}
	}
	var b strings.Builder
	b.WriteString("\n")
	if len(r.OtherSnapshots) > 0 {
		fmt.Fprintf(&b, "Also kept, older than the history: %s\n", strings.Join(r.OtherSnapshots, ", "))
	}
	if r.DefaultRollbackTarget != "" {
		fmt.Fprintf(&b, "kubectl softreload rollback %s goes to %s; use --to REV for another revision with a kept snapshot.\n", r.Name, r.DefaultRollbackTarget)
	} else if whyNot != nil {
		fmt.Fprintf(&b, "kubectl softreload rollback %s: %v\n", r.Name, whyNot)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
