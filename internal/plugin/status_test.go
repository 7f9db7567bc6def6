package plugin_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/plugin"
)

func TestStatus(t *testing.T) {
	ns := namespace(t)
	newPool(ns, "web").revisions("rev-1", "rev-2").counts(5, 3, 2, 1, 1).
		condition(workersv1alpha1.ConditionAvailable, metav1.ConditionFalse, workersv1alpha1.ReasonPodsNotReady, "3 of 5 pods are not ready").
		condition(workersv1alpha1.ConditionProgressing, metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "rolling out rev-2:\n3 of 5 pods").
		condition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "web-c failed to reload").
		create(t)
	failure := "worker http/2 exited with status 255: PHP Parse error: syntax error, unexpected end of file in /code/index.php on line 7\nmore output"
	pod(t, ns, "web-a", "web", map[string]string{
		workersv1alpha1.DesiredRevisionAnnotation: "rev-2",
		workersv1alpha1.StatusAnnotation:          agentStatus("rev-2", workersv1alpha1.AgentReady, "rev-2", 4, 4, ""),
	})
	pod(t, ns, "web-b", "web", map[string]string{
		workersv1alpha1.DesiredRevisionAnnotation: "rev-2",
		workersv1alpha1.StatusAnnotation:          agentStatus("rev-2", workersv1alpha1.AgentReloading, "rev-1", 3, 4, ""),
	})
	pod(t, ns, "web-c", "web", map[string]string{
		workersv1alpha1.DesiredRevisionAnnotation: "rev-2",
		workersv1alpha1.StatusAnnotation:          agentStatus("rev-2", workersv1alpha1.AgentFailed, "rev-1", 4, 4, failure),
	})
	pod(t, ns, "web-d", "web", nil)
	pod(t, ns, "web-e", "web", map[string]string{
		workersv1alpha1.DesiredRevisionAnnotation: "rev-1",
		workersv1alpha1.StatusAnnotation:          "{not json",
	})
	pod(t, ns, "api-1", "api", map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "rev-9"})
	// Matched by web's selector, but not web's.
	podLabelled(t, ns, "web-stray", map[string]string{"app": "web"}, nil)
	podLabelled(t, ns, "web-api", map[string]string{"app": "web", workersv1alpha1.PoolLabel: "api"},
		map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "rev-9"})

	t.Run("a summary of the pool, then a row per selected pod", func(t *testing.T) {
		out := run(t, "status", "web", "-n", ns)
		wantContains(t, out,
			"WorkerPool "+ns+"/web",
			"Current revision:  rev-1",
			"Update revision:   rev-2 (rolling out)",
			"Paused:            no",
			"Pods:              5 total, 3 updated, 2 ready, 1 reloading, 1 failed",
		)
		var gotConditions [][]string
		for _, row := range tableRows(t, out, "TYPE") {
			gotConditions = append(gotConditions, append(row[:3:3], row[4]))
		}
		wantConditions := [][]string{
			{"Available", "False", "PodsNotReady", "3 of 5 pods are not ready"},
			{"Progressing", "True", "RolloutInProgress", "rolling out rev-2: 3 of 5 pods"},
			{"Degraded", "True", "ReloadFailed", "web-c failed to reload"},
		}
		if diff := cmp.Diff(wantConditions, gotConditions); diff != "" {
			t.Errorf("conditions (-want +got):\n%s", diff)
		}

		var got [][]string
		messages := map[string]string{}
		for _, row := range tableRows(t, out, "POD") {
			got = append(got, row[:5])
			messages[row[0]] = row[6]
		}
		want := [][]string{
			{"web-a", "rev-2", "rev-2", "Ready", "4/4"},
			{"web-b", "rev-2", "rev-1", "Reloading", "3/4"},
			{"web-c", "rev-2", "rev-1", "Failed", "4/4"},
			{"web-d", "-", "-", "Pending", "-"},
			{"web-e", "rev-1", "-", "Unknown", "-"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("pod rows (-want +got):\n%s", diff)
		}
		if m := messages["web-b"]; m != "loading rev-2" {
			t.Errorf("web-b message = %q, want loading rev-2", m)
		}
		if m := messages["web-c"]; !strings.HasPrefix(m, "worker http/2 exited with status 255: PHP Parse") || !strings.HasSuffix(m, "...") || len(m) > 60 {
			t.Errorf("web-c message = %q, want the failure's start, cut to 60 characters", m)
		}
		if m := messages["web-e"]; !strings.Contains(m, "unreadable softreload.dev/status") {
			t.Errorf("web-e message = %q, want it to say the report is unreadable", m)
		}
	})

	t.Run("the pods the selector matches that the pool does not govern, and why", func(t *testing.T) {
		out := run(t, "status", "web", "-n", ns)
		_, rest, ok := strings.Cut(out, "Selected but not governed (the pool never writes to them; they hold no slot of its budget):\n")
		if !ok {
			t.Fatalf("no section of pods not governed in:\n%s", out)
		}
		want := [][]string{
			{"web-api", "belongs to WorkerPool api (softreload.dev/pool=api)"},
			{"web-stray", "no softreload.dev/pool label: no agent"},
		}
		if diff := cmp.Diff(want, tableRows(t, rest, "POD")); diff != "" {
			t.Errorf("pods not governed (-want +got):\n%s", diff)
		}
	})

	t.Run("-o json carries the pool status and every pod's report", func(t *testing.T) {
		var report plugin.StatusReport
		must(t, json.Unmarshal([]byte(run(t, "status", "web", "-n", ns, "-o", "json")), &report))
		checkReport(t, report, failure)
	})

	t.Run("-o yaml says the same", func(t *testing.T) {
		var report plugin.StatusReport
		must(t, yaml.Unmarshal([]byte(run(t, "status", "web", "-n", ns, "-o", "yaml")), &report))
		checkReport(t, report, failure)
	})

	t.Run("a pool whose selector matches none of its own pods says so", func(t *testing.T) {
		newPool(ns, "lonely").create(t)
		podLabelled(t, ns, "lonely-x", map[string]string{"app": "lonely", workersv1alpha1.PoolLabel: "web"}, nil)
		out := run(t, "status", "lonely", "-n", ns)
		wantContains(t, out,
			"No pod that the selector app=lonely matches is labelled softreload.dev/pool=lonely.",
			"lonely-x  belongs to WorkerPool web (softreload.dev/pool=web)",
		)
	})

	t.Run("a pool without pods says so", func(t *testing.T) {
		newPool(ns, "empty").annotation(workersv1alpha1.RollbackToAnnotation, "rev-0").create(t)
		run(t, "pause", "empty", "-n", ns) // a new generation the controller has not seen
		out := run(t, "status", "empty", "-n", ns)
		wantContains(t, out,
			"Current revision:  -",
			"Rollback to:       rev-0 (requested)",
			"Paused:            yes",
			"Conditions:        none reported yet",
			"the controller has not seen the latest spec yet (observed generation 1, spec generation 2)",
			"No pods in namespace "+ns+" match the selector app=empty.",
		)
	})
}

func checkReport(t *testing.T, report plugin.StatusReport, failure string) {
	t.Helper()
	if report.Name != "web" || report.Status.CurrentRevision != "rev-1" || report.Status.UpdateRevision != "rev-2" || len(report.Status.Conditions) != 3 {
		t.Errorf("pool in the report: %+v", report)
	}
	type pod struct{ Name, Desired, State, Running, Message string }
	var got []pod
	for _, p := range report.Pods {
		r := pod{Name: p.Name, Desired: p.DesiredRevision, State: p.State}
		if p.Agent != nil {
			r.Running, r.Message = p.Agent.Running, p.Agent.Message
		}
		got = append(got, r)
	}
	want := []pod{
		{"web-a", "rev-2", "Ready", "rev-2", ""},
		{"web-b", "rev-2", "Reloading", "rev-1", ""},
		{"web-c", "rev-2", "Failed", "rev-1", failure},
		{"web-d", "", "Pending", "", ""},
		{"web-e", "rev-1", "Unknown", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pods in the report (-want +got):\n%s", diff)
	}
	wantNotGoverned := []plugin.NotGovernedPod{
		{Name: "web-api", Pool: "api", Reason: "belongs to WorkerPool api (softreload.dev/pool=api)"},
		{Name: "web-stray", Reason: "no softreload.dev/pool label: no agent"},
	}
	if diff := cmp.Diff(wantNotGoverned, report.NotGoverned); diff != "" {
		t.Errorf("pods not governed in the report (-want +got):\n%s", diff)
	}
}
