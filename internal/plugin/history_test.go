package plugin_test

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/plugin"
	"github.com/softreload/softreload/internal/testing/suite"
)

// shop is a pool four revisions old: rev-4 failed to roll out, rev-3 runs
// everywhere, rev-2 completed but its snapshot was pruned, rev-1 completed
// and is kept, and rev-0 is kept though the history no longer lists it.
func shop(ns string) {
	GinkgoHelper()
	newPool(ns, "shop").revisions("rev-3", "rev-4").
		record("rev-4", "CodeChanged", "Failed", 5*time.Minute, 0).
		record("rev-3", "Restart", "Complete", 2*time.Hour, 110*time.Minute).
		record("rev-2", "CodeChanged", "Superseded", 3*time.Hour, 170*time.Minute).
		record("rev-1", "SpecChanged", "Superseded", 4*time.Hour, 230*time.Minute).
		create()
	for _, rev := range []string{"rev-4", "rev-3", "rev-1", "rev-0"} {
		snapshot(ns, "shop", rev)
	}
	// Another pool's snapshot of a revision with the same name is not one
	// of shop's.
	snapshot(ns, "other", "rev-2")
}

var _ = Describe("kubectl softreload history", Ordered, Label(suite.ControlPlane), func() {
	const ns = "plugin-history"
	BeforeAll(func() {
		namespace(ns)
		shop(ns)
	})

	It("lists the revisions newest first, with what a rollback can use", func() {
		out := run("history", "shop", "-n", ns)
		var got [][]string
		for _, row := range tableRows(out, "REVISION") {
			// The ages in CREATED and COMPLETED depend on the clock.
			got = append(got, []string{row[0], row[1], row[2], row[5], row[6], row[7]})
		}
		Expect(got).To(BeComparableTo([][]string{
			{"rev-4", "CodeChanged", "ConfigMap shop-code (resourceVersion rev-4)", "Failed", "kept", "rolling out"},
			{"rev-3", "Restart", "ConfigMap shop-code (resourceVersion rev-3)", "Complete", "kept", "current"},
			{"rev-2", "CodeChanged", "ConfigMap shop-code (resourceVersion rev-2)", "Superseded", "gone", ""},
			{"rev-1", "SpecChanged", "ConfigMap shop-code (resourceVersion rev-1)", "Superseded", "kept", "rollback goes here"},
		}), "history rows of:\n%s", out)
		Expect(out).To(containAll(
			"Also kept, older than the history: rev-0",
			"kubectl softreload rollback shop goes to rev-1",
		))
	})

	It("says the same in -o json", func() {
		var report plugin.HistoryReport
		Expect(json.Unmarshal([]byte(run("history", "shop", "-n", ns, "-o", "json")), &report)).To(Succeed())
		type entry struct{ Revision, Result, Snapshot string }
		var got []entry
		for _, e := range report.Revisions {
			got = append(got, entry{e.Revision, e.Result, e.Snapshot})
		}
		Expect(got).To(BeComparableTo([]entry{
			{"rev-4", "Failed", "shop-rev-4"}, {"rev-3", "Complete", "shop-rev-3"}, {"rev-2", "Superseded", ""}, {"rev-1", "Superseded", "shop-rev-1"},
		}), "revisions")
		Expect(report).To(SatisfyAll(
			HaveField("CurrentRevision", "rev-3"),
			HaveField("UpdateRevision", "rev-4"),
			HaveField("DefaultRollbackTarget", "rev-1"),
		), "report")
		Expect(report.OtherSnapshots).To(BeComparableTo([]string{"rev-0"}), "other snapshots")
	})

	It("says that a new pool has no history and nothing to roll back to", func() {
		newPool(ns, "fresh").create()
		Expect(run("history", "fresh", "-n", ns)).To(containAll(
			"WorkerPool "+ns+"/fresh has no revisions in its history yet.",
			"kubectl softreload rollback fresh: nothing to roll back to: the pool has no current revision yet",
		))
	})
})
