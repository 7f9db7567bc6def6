package plugin_test

import (
	"encoding/json"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/plugin"
	"github.com/softreload/softreload/internal/testing/suite"
)

// failure is web-c's report of its failed reload, longer than a row shows.
const failure = "worker http/2 exited with status 255: PHP Parse error: syntax error, unexpected end of file in /code/index.php on line 7\nmore output"

var _ = Describe("kubectl softreload status", Ordered, Label(suite.ControlPlane), func() {
	const ns = "plugin-status"
	BeforeAll(func() {
		namespace(ns)
		newPool(ns, "web").revisions("rev-1", "rev-2").counts(5, 3, 2, 1, 1).
			condition(workersv1alpha1.ConditionAvailable, metav1.ConditionFalse, workersv1alpha1.ReasonPodsNotReady, "3 of 5 pods are not ready").
			condition(workersv1alpha1.ConditionProgressing, metav1.ConditionTrue, workersv1alpha1.ReasonRolloutInProgress, "rolling out rev-2:\n3 of 5 pods").
			condition(workersv1alpha1.ConditionDegraded, metav1.ConditionTrue, workersv1alpha1.ReasonReloadFailed, "web-c failed to reload").
			create()
		pod(ns, "web-a", "web", map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "rev-2",
			workersv1alpha1.StatusAnnotation:          agentStatus("rev-2", workersv1alpha1.AgentReady, "rev-2", 4, 4, ""),
		})
		pod(ns, "web-b", "web", map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "rev-2",
			workersv1alpha1.StatusAnnotation:          agentStatus("rev-2", workersv1alpha1.AgentReloading, "rev-1", 3, 4, ""),
		})
		pod(ns, "web-c", "web", map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "rev-2",
			workersv1alpha1.StatusAnnotation:          agentStatus("rev-2", workersv1alpha1.AgentFailed, "rev-1", 4, 4, failure),
		})
		pod(ns, "web-d", "web", nil)
		pod(ns, "web-e", "web", map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "rev-1",
			workersv1alpha1.StatusAnnotation:          "{not json",
		})
		pod(ns, "api-1", "api", map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "rev-9"})
		// Matched by web's selector, but not web's.
		podLabelled(ns, "web-stray", map[string]string{"app": "web"}, nil)
		podLabelled(ns, "web-api", map[string]string{"app": "web", workersv1alpha1.PoolLabel: "api"},
			map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "rev-9"})
	})

	It("shows a summary of the pool, then a row per selected pod", func() {
		out := run("status", "web", "-n", ns)
		Expect(out).To(containAll(
			"WorkerPool "+ns+"/web",
			"Current revision:  rev-1",
			"Update revision:   rev-2 (rolling out)",
			"Paused:            no",
			"Pods:              5 total, 3 updated, 2 ready, 1 reloading, 1 failed",
		))
		var gotConditions [][]string
		for _, row := range tableRows(out, "TYPE") {
			gotConditions = append(gotConditions, append(row[:3:3], row[4]))
		}
		Expect(gotConditions).To(BeComparableTo([][]string{
			{"Available", "False", "PodsNotReady", "3 of 5 pods are not ready"},
			{"Progressing", "True", "RolloutInProgress", "rolling out rev-2: 3 of 5 pods"},
			{"Degraded", "True", "ReloadFailed", "web-c failed to reload"},
		}), "conditions")

		var got [][]string
		messages := map[string]string{}
		for _, row := range tableRows(out, "POD") {
			got = append(got, row[:5])
			messages[row[0]] = row[6]
		}
		Expect(got).To(BeComparableTo([][]string{
			{"web-a", "rev-2", "rev-2", "Ready", "4/4"},
			{"web-b", "rev-2", "rev-1", "Reloading", "3/4"},
			{"web-c", "rev-2", "rev-1", "Failed", "4/4"},
			{"web-d", "-", "-", "Pending", "-"},
			{"web-e", "rev-1", "-", "Unknown", "-"},
		}), "pod rows")
		Expect(messages).To(HaveKeyWithValue("web-b", "loading rev-2"), "web-b's message")
		Expect(messages["web-c"]).To(SatisfyAll(
			HavePrefix("worker http/2 exited with status 255: PHP Parse"), HaveSuffix("..."), WithTransform(func(s string) int { return len(s) }, BeNumerically("<=", 60)),
		), "web-c's message: want the failure's start, cut to 60 characters")
		Expect(messages["web-e"]).To(ContainSubstring("unreadable softreload.dev/status"), "web-e's message: want it to say the report is unreadable")
	})

	It("shows the pods the selector matches that the pool does not govern, and why", func() {
		out := run("status", "web", "-n", ns)
		_, rest, ok := strings.Cut(out, "Selected but not governed (the pool never writes to them; they hold no slot of its budget):\n")
		Expect(ok).To(BeTrue(), "no section of pods not governed in:\n%s", out)
		Expect(tableRows(rest, "POD")).To(BeComparableTo([][]string{
			{"web-api", "belongs to WorkerPool api (softreload.dev/pool=api)"},
			{"web-stray", "no softreload.dev/pool label: no agent"},
		}), "pods not governed")
	})

	It("carries in -o json the pool status and every pod's report", func() {
		var report plugin.StatusReport
		Expect(json.Unmarshal([]byte(run("status", "web", "-n", ns, "-o", "json")), &report)).To(Succeed())
		checkReport(report)
	})

	It("says the same in -o yaml", func() {
		var report plugin.StatusReport
		Expect(yaml.Unmarshal([]byte(run("status", "web", "-n", ns, "-o", "yaml")), &report)).To(Succeed())
		checkReport(report)
	})

	It("shows each gateway's open connections, as its agent counted them", func() {
		b := newPool(ns, "chat")
		no := false
		b.wp.Spec.Groups = append(b.wp.Spec.Groups, workersv1alpha1.WorkerGroup{Name: "gateway", Command: []string{"python3", "gateway.py"}, Count: 1, Reloadable: &no})
		b.revisions("rev-1", "rev-1").create()
		pod(ns, "chat-a", "chat", map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "rev-1",
			workersv1alpha1.StatusAnnotation: `{"revision":"rev-1","state":"Ready","running":"rev-1","ready":5,"total":5,` +
				`"groups":[{"name":"http","spec":"0a"},{"name":"gateway","spec":"1b","connections":12}]}`,
		})
		pod(ns, "chat-b", "chat", map[string]string{
			workersv1alpha1.DesiredRevisionAnnotation: "rev-1",
			workersv1alpha1.StatusAnnotation: `{"revision":"rev-1","state":"Ready","running":"rev-1","ready":5,"total":5,` +
				`"groups":[{"name":"http","spec":"0a"},{"name":"gateway","spec":"1b"}]}`,
		})
		pod(ns, "chat-c", "chat", nil)
		out := run("status", "chat", "-n", ns)
		Expect(out).To(ContainSubstring("CONNECTIONS"), "the header")
		connections := map[string]string{}
		for _, row := range tableRows(out, "POD") {
			connections[row[0]] = row[5]
		}
		Expect(connections).To(Equal(map[string]string{"chat-a": "gateway=12", "chat-b": "gateway=0", "chat-c": "gateway=-"}))
		Expect(run("status", "web", "-n", ns)).NotTo(ContainSubstring("CONNECTIONS"), "a pool without gateways")
	})

	It("says so when the selector matches none of the pool's own pods", func() {
		newPool(ns, "lonely").create()
		podLabelled(ns, "lonely-x", map[string]string{"app": "lonely", workersv1alpha1.PoolLabel: "web"}, nil)
		Expect(run("status", "lonely", "-n", ns)).To(containAll(
			"No pod that the selector app=lonely matches is labelled softreload.dev/pool=lonely.",
			"lonely-x  belongs to WorkerPool web (softreload.dev/pool=web)",
		))
	})

	It("says so when the pool has no pods", func() {
		newPool(ns, "empty").annotation(workersv1alpha1.RollbackToAnnotation, "rev-0").create()
		run("pause", "empty", "-n", ns) // a new generation the controller has not seen
		Expect(run("status", "empty", "-n", ns)).To(containAll(
			"Current revision:  -",
			"Rollback to:       rev-0 (requested)",
			"Paused:            yes",
			"Conditions:        none reported yet",
			"the controller has not seen the latest spec yet (observed generation 1, spec generation 2)",
			"No pods in namespace "+ns+" match the selector app=empty.",
		))
	})
})

// checkReport checks the report of web that -o json and -o yaml print.
func checkReport(report plugin.StatusReport) {
	GinkgoHelper()
	Expect(report.Name).To(Equal("web"), "pool in the report: %+v", report)
	Expect(report.Status.CurrentRevision).To(Equal("rev-1"), "pool in the report: %+v", report)
	Expect(report.Status.UpdateRevision).To(Equal("rev-2"), "pool in the report: %+v", report)
	Expect(report.Status.Conditions).To(HaveLen(3), "pool in the report: %+v", report)
	type pod struct{ Name, Desired, State, Running, Message string }
	var got []pod
	for _, p := range report.Pods {
		r := pod{Name: p.Name, Desired: p.DesiredRevision, State: p.State}
		if p.Agent != nil {
			r.Running, r.Message = p.Agent.Running, p.Agent.Message
		}
		got = append(got, r)
	}
	Expect(got).To(BeComparableTo([]pod{
		{"web-a", "rev-2", "Ready", "rev-2", ""},
		{"web-b", "rev-2", "Reloading", "rev-1", ""},
		{"web-c", "rev-2", "Failed", "rev-1", failure},
		{"web-d", "", "Pending", "", ""},
		{"web-e", "rev-1", "Unknown", "", ""},
	}), "pods in the report")
	Expect(report.NotGoverned).To(BeComparableTo([]plugin.NotGovernedPod{
		{Name: "web-api", Pool: "api", Reason: "belongs to WorkerPool api (softreload.dev/pool=api)"},
		{Name: "web-stray", Reason: "no softreload.dev/pool label: no agent"},
	}), "pods not governed in the report")
}
