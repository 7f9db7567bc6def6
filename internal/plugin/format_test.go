package plugin

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

var _ = DescribeTable("truncate",
	func(in string, n int, want string) {
		Expect(truncate(in, n)).To(Equal(want), "truncate(%q, %d)", in, n)
	},
	Entry("short stays", "worker exited", 20, "worker exited"),
	Entry("exactly n stays", "0123456789", 10, "0123456789"),
	Entry("long is cut with a mark", "0123456789abc", 10, "0123456..."),
	Entry("only the first line", "exit status 1\nstack trace", 40, "exit status 1..."),
	Entry("first line and cut", "0123456789abc\nmore", 10, "0123456..."),
	Entry("spaces around go", "  ready  ", 10, "ready"),
	Entry("characters, not bytes", "ééééééééééé", 10, "ééééééé..."),
	Entry("empty stays empty", "", 10, ""),
	Entry("leading blank lines go", "\n\nPHP error", 10, "PHP error"),
)

var _ = DescribeTable("A pod's row in status",
	func(annotations map[string]string, want []string) {
		now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: "web-0", CreationTimestamp: metav1.NewTime(now.Add(-90 * time.Minute)), Annotations: annotations,
		}}
		Expect(podRow(podReport(pod), now)).To(Equal(want))
	},
	Entry("no report yet", nil, []string{"web-0", "-", "-", "Pending", "-", "90m", ""}),
	Entry("desired but not reported",
		map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "r2"},
		[]string{"web-0", "r2", "-", "Pending", "-", "90m", ""}),
	Entry("ready",
		map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "r2",
			workersv1alpha1.StatusAnnotation:          `{"revision":"r2","state":"Ready","running":"r2","ready":8,"total":8}`,
		},
		[]string{"web-0", "r2", "r2", "Ready", "8/8", "90m", ""}),
	Entry("a ready report without running runs its revision",
		map[string]string{workersv1alpha1.StatusAnnotation: `{"revision":"r2","state":"Ready","ready":2,"total":2}`},
		[]string{"web-0", "-", "r2", "Ready", "2/2", "90m", ""}),
	Entry("reloading",
		map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "r3",
			workersv1alpha1.StatusAnnotation:          `{"revision":"r3","state":"Reloading","running":"r2","ready":7,"total":8}`,
		},
		[]string{"web-0", "r3", "r2", "Reloading", "7/8", "90m", "loading r3"}),
	Entry("failed, with the agent's message cut",
		map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "r3",
			workersv1alpha1.StatusAnnotation:          `{"revision":"r3","state":"Failed","running":"r2","ready":8,"total":8,"message":"worker http/0 not ready within 60s\nlast output: ..."}`,
		},
		[]string{"web-0", "r3", "r2", "Failed", "8/8", "90m", "worker http/0 not ready within 60s..."}),
	Entry("a gateway on an older spec",
		map[string]string{workersv1alpha1.StatusAnnotation: `{"revision":"r2","state":"Ready","running":"r2","ready":3,"total":3,"groups":[{"name":"web","spec":"0a"},{"name":"gw","spec":"1b","outdated":"SpecChanged"}]}`},
		[]string{"web-0", "-", "r2", "Ready", "3/3", "90m", "group gw on an older spec (SpecChanged): needs a new pod"}),
	Entry("an unreadable report",
		map[string]string{workersv1alpha1.StatusAnnotation: `{"state":`},
		[]string{"web-0", "-", "-", "Unknown", "-", "90m", "unreadable softreload.dev/status annotation: unexpected e..."}),
	Entry("a report without a state",
		map[string]string{workersv1alpha1.StatusAnnotation: `{"revision":"r1"}`},
		[]string{"web-0", "-", "-", "Unknown", "-", "90m", `softreload.dev/status annotation: state "": must be Reloa...`}),
)

// Fixtures of the rollback targets' specs.
var (
	completedAt = metav1.NewTime(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	done        = func(rev string) workersv1alpha1.RevisionRecord {
		return workersv1alpha1.RevisionRecord{Revision: rev, CompletedAt: &completedAt, Result: "Superseded"}
	}
	failed = func(rev string) workersv1alpha1.RevisionRecord {
		return workersv1alpha1.RevisionRecord{Revision: rev, Result: "Failed"}
	}
	status = func(current, update string, history ...workersv1alpha1.RevisionRecord) workersv1alpha1.WorkerPoolStatus {
		return workersv1alpha1.WorkerPoolStatus{CurrentRevision: current, UpdateRevision: update, History: history}
	}
	// kept are the snapshots kept, by revision.
	kept = func(revs ...string) map[string]string {
		m := map[string]string{}
		for _, r := range revs {
			m[r] = "pool-" + r
		}
		return m
	}
)

var _ = Describe("Rollback targets", func() {
	DescribeTable("without --to, the default",
		func(st workersv1alpha1.WorkerPoolStatus, snapshots map[string]string, want, wantErr string) {
			got, err := defaultRollbackTarget(st, snapshots)
			if wantErr == "" {
				Expect(err).NotTo(HaveOccurred())
			} else {
				Expect(err).To(MatchError(wantErr))
			}
			Expect(got).To(Equal(want), "target")
		},
		Entry("the one before the current",
			status("c", "c", done("c"), done("b"), done("a")), kept("a", "b", "c"), "b", ""),
		Entry("skips a newer failed update",
			status("c", "d", failed("d"), done("c"), done("b")), kept("b", "c", "d"), "b", ""),
		Entry("skips what never completed or was pruned",
			status("d", "d", done("d"), failed("c"), done("b"), done("a")), kept("a", "c", "d"), "a", ""),
		Entry("skips older records of the current revision",
			status("a", "a", done("a"), done("b"), done("a"), done("c")), kept("a", "b", "c"), "b", ""),
		Entry("a current revision the history lost: any completed one",
			status("x", "x", done("b"), done("a")), kept("a", "b"), "b", ""),
		Entry("no current revision",
			status("", "a", failed("a")), kept("a"), "",
			"nothing to roll back to: the pool has no current revision yet (no revision has completed on every pod)"),
		Entry("only the current revision",
			status("a", "a", done("a")), kept("a"), "",
			"nothing to roll back to: the history has no revision older than the current one, a"),
		Entry("older ones unusable",
			status("c", "c", done("c"), failed("b"), done("a")), kept("b", "c"), "",
			"nothing to roll back to: no revision older than the current one, c, completed and still has a snapshot: b never completed (Failed); a has no kept snapshot"),
	)

	DescribeTable("--to, checked",
		func(st workersv1alpha1.WorkerPoolStatus, snapshots map[string]string, rev, wantErr string) {
			err := checkRollbackTarget(st, snapshots, rev)
			if wantErr == "" {
				Expect(err).NotTo(HaveOccurred())
			} else {
				Expect(err).To(MatchError(wantErr))
			}
		},
		Entry("kept and in the history", status("c", "c", done("c"), done("b"), done("a")), kept("b", "c", "z"), "b", ""),
		Entry("kept, older than the history", status("c", "c", done("c"), done("b"), done("a")), kept("b", "c", "z"), "z", ""),
		Entry("pruned", status("c", "c", done("c"), done("b"), done("a")), kept("b", "c", "z"), "a",
			"revision a is in the history but its snapshot is no longer kept (see spec.revisionHistoryLimit); revisions that can be rolled back to: b, c, z"),
		Entry("unknown", status("c", "c", done("c"), done("b"), done("a")), kept("b", "c", "z"), "q",
			"no revision q: it is neither in the history nor kept as a snapshot; revisions that can be rolled back to: b, c, z"),
		Entry("no snapshot at all", status("", ""), nil, "a",
			"no revision a: it is neither in the history nor kept as a snapshot; revisions that can be rolled back to: none"),
	)
})

var _ = DescribeTable("A revision's row in history",
	func(entry HistoryEntry, want []string) {
		report := HistoryReport{CurrentRevision: "b", UpdateRevision: "c", RollbackTo: "a", DefaultRollbackTarget: "a"}
		Expect(historyRow(report, entry, historyNow)).To(Equal(want))
	},
	Entry("the update being rolled out",
		HistoryEntry{RevisionRecord: workersv1alpha1.RevisionRecord{Revision: "c", Cause: "CodeChanged", Source: "ConfigMap web-code (resourceVersion 812)", CreatedAt: ago(time.Minute)}, Snapshot: "web-c"},
		[]string{"c", "CodeChanged", "ConfigMap web-code (resourceVersion 812)", "60s", "-", "-", "kept", "rolling out"}),
	Entry("the current revision",
		HistoryEntry{RevisionRecord: workersv1alpha1.RevisionRecord{Revision: "b", Cause: "Restart", CreatedAt: ago(3 * time.Hour), CompletedAt: agoPtr(2 * time.Hour), Result: "Complete"}, Snapshot: "web-b"},
		[]string{"b", "Restart", "-", "3h", "120m", "Complete", "kept", "current"}),
	Entry("a pruned revision with a long source",
		HistoryEntry{RevisionRecord: workersv1alpha1.RevisionRecord{Revision: "x", Source: "image registry.example.com/team/very-long-repository/code:2026-11-28-build-1234", Result: "Superseded"}},
		[]string{"x", "-", "image registry.example.com/team/very-long-repository/code:202...", "-", "-", "Superseded", "gone", ""}),
	Entry("the requested and default rollback target",
		HistoryEntry{RevisionRecord: workersv1alpha1.RevisionRecord{Revision: "a", CompletedAt: agoPtr(2 * time.Hour)}, Snapshot: "web-a"},
		[]string{"a", "-", "-", "-", "120m", "-", "kept", "rollback requested, rollback goes here"}),
)

// historyNow is the clock of the history rows' specs.
var historyNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// ago is the time d before historyNow.
func ago(d time.Duration) metav1.Time { return metav1.NewTime(historyNow.Add(-d)) }

// agoPtr is ago as a pointer, as CompletedAt is.
func agoPtr(d time.Duration) *metav1.Time { t := ago(d); return &t }

var _ = Describe("table", func() {
	It("aligns the columns under the header, with the indent given and no trailing blanks", func() {
		var b strings.Builder
		Expect(table(&b, "  ", []string{"POD", "STATE", "MESSAGE"}, [][]string{
			{"web-0", "Ready", ""},
			{"web-long-name", "Failed", "worker exited"},
		})).To(Succeed())
		Expect(b.String()).To(Equal("" +
			"  POD            STATE   MESSAGE\n" +
			"  web-0          Ready\n" +
			"  web-long-name  Failed  worker exited\n"))
	})
})
