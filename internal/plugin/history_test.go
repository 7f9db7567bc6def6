package plugin_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/softreload/softreload/internal/plugin"
)

// shop is a pool four revisions old: rev-4 failed to roll out, rev-3 runs
// everywhere, rev-2 completed but its snapshot was pruned, rev-1 completed
// and is kept, and rev-0 is kept though the history no longer lists it.
func shop(t *testing.T, ns string) {
	t.Helper()
	newPool(ns, "shop").revisions("rev-3", "rev-4").
		record("rev-4", "CodeChanged", "Failed", 5*time.Minute, 0).
		record("rev-3", "Restart", "Complete", 2*time.Hour, 110*time.Minute).
		record("rev-2", "CodeChanged", "Superseded", 3*time.Hour, 170*time.Minute).
		record("rev-1", "SpecChanged", "Superseded", 4*time.Hour, 230*time.Minute).
		create(t)
	for _, rev := range []string{"rev-4", "rev-3", "rev-1", "rev-0"} {
		snapshot(t, ns, "shop", rev)
	}
	// Another pool's snapshot of a revision with the same name is not one
	// of shop's.
	snapshot(t, ns, "other", "rev-2")
}

func TestHistory(t *testing.T) {
	ns := namespace(t)
	shop(t, ns)

	t.Run("revisions newest first, with what a rollback can use", func(t *testing.T) {
		out := run(t, "history", "shop", "-n", ns)
		var got [][]string
		for _, row := range tableRows(t, out, "REVISION") {
			// The ages in CREATED and COMPLETED depend on the clock.
			got = append(got, []string{row[0], row[1], row[2], row[5], row[6], row[7]})
		}
		want := [][]string{
			{"rev-4", "CodeChanged", "ConfigMap shop-code (resourceVersion rev-4)", "Failed", "kept", "rolling out"},
			{"rev-3", "Restart", "ConfigMap shop-code (resourceVersion rev-3)", "Complete", "kept", "current"},
			{"rev-2", "CodeChanged", "ConfigMap shop-code (resourceVersion rev-2)", "Superseded", "gone", ""},
			{"rev-1", "SpecChanged", "ConfigMap shop-code (resourceVersion rev-1)", "Superseded", "kept", "rollback goes here"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("history rows (-want +got):\n%s\n%s", diff, out)
		}
		wantContains(t, out,
			"Also kept, older than the history: rev-0",
			"kubectl softreload rollback shop goes to rev-1",
		)
	})

	t.Run("-o json", func(t *testing.T) {
		var report plugin.HistoryReport
		must(t, json.Unmarshal([]byte(run(t, "history", "shop", "-n", ns, "-o", "json")), &report))
		type entry struct{ Revision, Result, Snapshot string }
		var got []entry
		for _, e := range report.Revisions {
			got = append(got, entry{e.Revision, e.Result, e.Snapshot})
		}
		want := []entry{{"rev-4", "Failed", "shop-rev-4"}, {"rev-3", "Complete", "shop-rev-3"}, {"rev-2", "Superseded", ""}, {"rev-1", "Superseded", "shop-rev-1"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("revisions (-want +got):\n%s", diff)
		}
		if report.CurrentRevision != "rev-3" || report.UpdateRevision != "rev-4" || report.DefaultRollbackTarget != "rev-1" {
			t.Errorf("report = %+v", report)
		}
		if diff := cmp.Diff([]string{"rev-0"}, report.OtherSnapshots); diff != "" {
			t.Errorf("other snapshots (-want +got):\n%s", diff)
		}
	})

	t.Run("a new pool has no history and nothing to roll back to", func(t *testing.T) {
		newPool(ns, "fresh").create(t)
		out := run(t, "history", "fresh", "-n", ns)
		wantContains(t, out,
			"WorkerPool "+ns+"/fresh has no revisions in its history yet.",
			"kubectl softreload rollback fresh: nothing to roll back to: the pool has no current revision yet",
		)
	})
}
