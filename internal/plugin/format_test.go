package plugin

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

func TestTruncate(t *testing.T) {
	cases := map[string]struct {
		in   string
		n    int
		want string
	}{
		"short stays":             {"worker exited", 20, "worker exited"},
		"exactly n stays":         {"0123456789", 10, "0123456789"},
		"long is cut with a mark": {"0123456789abc", 10, "0123456..."},
		"only the first line":     {"exit status 1\nstack trace", 40, "exit status 1..."},
		"first line and cut":      {"0123456789abc\nmore", 10, "0123456..."},
		"spaces around go":        {"  ready  ", 10, "ready"},
		"characters, not bytes":   {"ééééééééééé", 10, "ééééééé..."},
		"empty stays empty":       {"", 10, ""},
		"leading blank lines go":  {"\n\nPHP error", 10, "PHP error"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, truncate(tc.in, tc.n)); diff != "" {
				t.Errorf("truncate(%q, %d) (-want +got):\n%s", tc.in, tc.n, diff)
			}
		})
	}
}

func TestPodRow(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	created := metav1.NewTime(now.Add(-90 * time.Minute))
	newPod := func(annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", CreationTimestamp: created, Annotations: annotations}}
	}
	cases := map[string]struct {
		annotations map[string]string
		want        []string
	}{
		"no report yet": {
			annotations: nil,
			want:        []string{"web-0", "-", "-", "Pending", "-", "90m", ""},
		},
		"desired but not reported": {
			annotations: map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "r2"},
			want:        []string{"web-0", "r2", "-", "Pending", "-", "90m", ""},
		},
		"ready": {
			annotations: map[string]string{
				workersv1alpha1.DesiredRevisionAnnotation: "r2",
				workersv1alpha1.StatusAnnotation:          `{"revision":"r2","state":"Ready","running":"r2","ready":8,"total":8}`,
			},
			want: []string{"web-0", "r2", "r2", "Ready", "8/8", "90m", ""},
		},
		"a ready report without running runs its revision": {
			annotations: map[string]string{workersv1alpha1.StatusAnnotation: `{"revision":"r2","state":"Ready","ready":2,"total":2}`},
			want:        []string{"web-0", "-", "r2", "Ready", "2/2", "90m", ""},
		},
		"reloading": {
			annotations: map[string]string{
				workersv1alpha1.DesiredRevisionAnnotation: "r3",
				workersv1alpha1.StatusAnnotation:          `{"revision":"r3","state":"Reloading","running":"r2","ready":7,"total":8}`,
			},
			want: []string{"web-0", "r3", "r2", "Reloading", "7/8", "90m", "loading r3"},
		},
		"failed, with the agent's message cut": {
			annotations: map[string]string{
				workersv1alpha1.DesiredRevisionAnnotation: "r3",
				workersv1alpha1.StatusAnnotation:          `{"revision":"r3","state":"Failed","running":"r2","ready":8,"total":8,"message":"worker http/0 not ready within 60s\nlast output: ..."}`,
			},
			want: []string{"web-0", "r3", "r2", "Failed", "8/8", "90m", "worker http/0 not ready within 60s..."},
		},
		"a gateway on an older spec": {
			annotations: map[string]string{workersv1alpha1.StatusAnnotation: `{"revision":"r2","state":"Ready","running":"r2","ready":3,"total":3,"groups":[{"name":"web","spec":"0a"},{"name":"gw","spec":"1b","outdated":"SpecChanged"}]}`},
			want:        []string{"web-0", "-", "r2", "Ready", "3/3", "90m", "group gw on an older spec (SpecChanged): needs a new pod"},
		},
		"an unreadable report": {
			annotations: map[string]string{workersv1alpha1.StatusAnnotation: `{"state":`},
			want:        []string{"web-0", "-", "-", "Unknown", "-", "90m", "unreadable softreload.dev/status annotation: unexpected e..."},
		},
		"a report without a state": {
			annotations: map[string]string{workersv1alpha1.StatusAnnotation: `{"revision":"r1"}`},
			want:        []string{"web-0", "-", "-", "Unknown", "-", "90m", `softreload.dev/status annotation: state "": must be Reloa...`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, podRow(podReport(newPod(tc.annotations)), now)); diff != "" {
				t.Errorf("podRow (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRollbackTargets(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	done := func(rev string) workersv1alpha1.RevisionRecord {
		return workersv1alpha1.RevisionRecord{Revision: rev, CompletedAt: &at, Result: "Superseded"}
	}
	failed := func(rev string) workersv1alpha1.RevisionRecord {
		return workersv1alpha1.RevisionRecord{Revision: rev, Result: "Failed"}
	}
	status := func(current, update string, history ...workersv1alpha1.RevisionRecord) workersv1alpha1.WorkerPoolStatus {
		return workersv1alpha1.WorkerPoolStatus{CurrentRevision: current, UpdateRevision: update, History: history}
	}
	kept := func(revs ...string) map[string]string {
		m := map[string]string{}
		for _, r := range revs {
			m[r] = "pool-" + r
		}
		return m
	}

	defaults := map[string]struct {
		status  workersv1alpha1.WorkerPoolStatus
		kept    map[string]string
		want    string
		wantErr string
	}{
		"the one before the current": {
			status: status("c", "c", done("c"), done("b"), done("a")),
			kept:   kept("a", "b", "c"),
			want:   "b",
		},
		"skips a newer failed update": {
			status: status("c", "d", failed("d"), done("c"), done("b")),
			kept:   kept("b", "c", "d"),
			want:   "b",
		},
		"skips what never completed or was pruned": {
			status: status("d", "d", done("d"), failed("c"), done("b"), done("a")),
			kept:   kept("a", "c", "d"),
			want:   "a",
		},
		"skips older records of the current revision": {
			status: status("a", "a", done("a"), done("b"), done("a"), done("c")),
			kept:   kept("a", "b", "c"),
			want:   "b",
		},
		"a current revision the history lost: any completed one": {
			status: status("x", "x", done("b"), done("a")),
			kept:   kept("a", "b"),
			want:   "b",
		},
		"no current revision": {
			status:  status("", "a", failed("a")),
			kept:    kept("a"),
			wantErr: "nothing to roll back to: the pool has no current revision yet (no revision has completed on every pod)",
		},
		"only the current revision": {
			status:  status("a", "a", done("a")),
			kept:    kept("a"),
			wantErr: "nothing to roll back to: the history has no revision older than the current one, a",
		},
		"older ones unusable": {
			status:  status("c", "c", done("c"), failed("b"), done("a")),
			kept:    kept("b", "c"),
			wantErr: "nothing to roll back to: no revision older than the current one, c, completed and still has a snapshot: b never completed (Failed); a has no kept snapshot",
		},
	}
	for name, tc := range defaults {
		t.Run("default/"+name, func(t *testing.T) {
			got, err := defaultRollbackTarget(tc.status, tc.kept)
			if diff := cmp.Diff(tc.wantErr, errString(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if got != tc.want {
				t.Errorf("target = %q, want %q", got, tc.want)
			}
		})
	}

	explicit := map[string]struct {
		rev     string
		wantErr string
	}{
		"kept and in the history":      {rev: "b"},
		"kept, older than the history": {rev: "z"},
		"pruned": {
			rev:     "a",
			wantErr: "revision a is in the history but its snapshot is no longer kept (see spec.revisionHistoryLimit); revisions that can be rolled back to: b, c, z",
		},
		"unknown": {
			rev:     "q",
			wantErr: "no revision q: it is neither in the history nor kept as a snapshot; revisions that can be rolled back to: b, c, z",
		},
	}
	for name, tc := range explicit {
		t.Run("--to/"+name, func(t *testing.T) {
			err := checkRollbackTarget(status("c", "c", done("c"), done("b"), done("a")), kept("b", "c", "z"), tc.rev)
			if diff := cmp.Diff(tc.wantErr, errString(err)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("--to/no snapshot at all", func(t *testing.T) {
		err := checkRollbackTarget(status("", ""), nil, "a")
		want := "no revision a: it is neither in the history nor kept as a snapshot; revisions that can be rolled back to: none"
		if diff := cmp.Diff(want, errString(err)); diff != "" {
			t.Errorf("error (-want +got):\n%s", diff)
		}
	})
}

func TestHistoryRow(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	completed := metav1.NewTime(now.Add(-2 * time.Hour))
	report := HistoryReport{CurrentRevision: "b", UpdateRevision: "c", RollbackTo: "a", DefaultRollbackTarget: "a"}
	cases := map[string]struct {
		entry HistoryEntry
		want  []string
	}{
		"the update being rolled out": {
			entry: HistoryEntry{RevisionRecord: workersv1alpha1.RevisionRecord{Revision: "c", Cause: "CodeChanged", Source: "ConfigMap web-code (resourceVersion 812)", CreatedAt: metav1.NewTime(now.Add(-time.Minute))}, Snapshot: "web-c"},
			want:  []string{"c", "CodeChanged", "ConfigMap web-code (resourceVersion 812)", "60s", "-", "-", "kept", "rolling out"},
		},
		"the current revision": {
			entry: HistoryEntry{RevisionRecord: workersv1alpha1.RevisionRecord{Revision: "b", Cause: "Restart", CreatedAt: metav1.NewTime(now.Add(-3 * time.Hour)), CompletedAt: &completed, Result: "Complete"}, Snapshot: "web-b"},
			want:  []string{"b", "Restart", "-", "3h", "120m", "Complete", "kept", "current"},
		},
		"a pruned revision with a long source": {
			entry: HistoryEntry{RevisionRecord: workersv1alpha1.RevisionRecord{Revision: "x", Source: "image registry.example.com/team/very-long-repository/code:2026-11-28-build-1234", Result: "Superseded"}},
			want:  []string{"x", "-", "image registry.example.com/team/very-long-repository/code:202...", "-", "-", "Superseded", "gone", ""},
		},
		"the requested and default rollback target": {
			entry: HistoryEntry{RevisionRecord: workersv1alpha1.RevisionRecord{Revision: "a", CompletedAt: &completed}, Snapshot: "web-a"},
			want:  []string{"a", "-", "-", "-", "120m", "-", "kept", "rollback requested, rollback goes here"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, historyRow(report, tc.entry, now)); diff != "" {
				t.Errorf("historyRow (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTable(t *testing.T) {
	var b strings.Builder
	err := table(&b, "  ", []string{"POD", "STATE", "MESSAGE"}, [][]string{
		{"web-0", "Ready", ""},
		{"web-long-name", "Failed", "worker exited"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"  POD            STATE   MESSAGE\n" +
		"  web-0          Ready\n" +
		"  web-long-name  Failed  worker exited\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("table (-want +got):\n%s", diff)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
