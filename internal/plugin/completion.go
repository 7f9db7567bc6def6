package plugin

import (
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// completePools completes the POOL argument with the WorkerPools of the
// namespace. A failure completes nothing rather than printing an error
// into the user's shell.
func (r *runner) completePools(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	s, err := r.connect()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var pools workersv1alpha1.WorkerPoolList
	if err := s.c.List(cmd.Context(), &pools, client.InNamespace(s.ns)); err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []cobra.Completion
	for _, wp := range pools.Items {
		if strings.HasPrefix(wp.Name, toComplete) {
			names = append(names, wp.Name)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// completeRollbackTargets completes --to with the revisions of the pool
// whose snapshots are kept, newest first as the history lists them.
func (r *runner) completeRollbackTargets(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) != 1 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	s, err := r.connect()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	wp, err := s.pool(cmd.Context(), args[0])
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	kept, err := s.keptSnapshots(cmd.Context(), args[0])
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	report := historyReport(wp, kept)
	var revs []cobra.Completion
	add := func(rev, description string) {
		if strings.HasPrefix(rev, toComplete) {
			revs = append(revs, cobra.CompletionWithDesc(rev, description))
		}
	}
	for _, e := range report.Revisions {
		if e.Snapshot != "" && e.Revision != wp.Status.CurrentRevision && kept[e.Revision] != "" {
			add(e.Revision, strings.TrimSpace(e.Cause+" "+e.Result))
			delete(kept, e.Revision) // once, for a revision listed twice
		}
	}
	for _, rev := range report.OtherSnapshots {
		add(rev, "older than the history")
	}
	return revs, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
}
