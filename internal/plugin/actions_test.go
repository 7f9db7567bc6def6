package plugin_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/suite"
)

var _ = Describe("kubectl softreload reload", Ordered, Label(suite.ControlPlane), func() {
	const ns = "plugin-reload"
	now := time.Date(2026, 11, 28, 13, 4, 5, 0, time.FixedZone("CET", 3600))
	clock := func() time.Time { return now }

	BeforeAll(func() {
		namespace(ns)
		newPool(ns, "web").annotation("team", "shop").create()
	})

	It("asks for a reload by the restartedAt annotation, in UTC, leaving the other annotations", func() {
		r := kubectlSoftreload(clock, "reload", "web", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.out).To(Equal("workerpool/web reload requested (softreload.dev/restartedAt=2026-11-28T12:04:05Z)\n"), "stdout")
		Expect(getPool(ns, "web").Annotations).To(BeComparableTo(
			map[string]string{"team": "shop", workersv1alpha1.RestartedAtAnnotation: "2026-11-28T12:04:05Z"}), "annotations")
	})

	It("asks for nothing new on a second reload in the same second", func() {
		r := kubectlSoftreload(clock, "reload", "web", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.out).To(ContainSubstring("workerpool/web reload already requested at 2026-11-28T12:04:05Z"))
	})

	It("makes a later reload a new request", func() {
		later := now.Add(time.Minute)
		Expect(kubectlSoftreload(func() time.Time { return later }, "reload", "web", "-n", ns).err).NotTo(HaveOccurred())
		Expect(getPool(ns, "web").Annotations).To(HaveKeyWithValue(workersv1alpha1.RestartedAtAnnotation, "2026-11-28T12:05:05Z"))
	})

	It("gives a paused pool the request and a warning that it waits", func() {
		newPool(ns, "held").paused().create()
		r := kubectlSoftreload(clock, "reload", "held", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.errOut).To(containAll("Warning: workerpool/held is paused", "kubectl softreload resume held"))
		Expect(getPool(ns, "held").Annotations).To(HaveKeyWithValue(workersv1alpha1.RestartedAtAnnotation, "2026-11-28T12:04:05Z"))
	})
})

var _ = Describe("kubectl softreload replace-pods", Ordered, Label(suite.ControlPlane), func() {
	const ns = "plugin-replace"
	now := time.Date(2026, 11, 28, 13, 4, 5, 0, time.FixedZone("CET", 3600))
	clock := func() time.Time { return now }

	BeforeAll(func() {
		namespace(ns)
		newPool(ns, "web").annotation("team", "shop").create()
	})

	It("asks for the pods' replacement by the replacePodsAt annotation, in UTC, leaving the other annotations and the spec", func() {
		before := getPool(ns, "web")
		r := kubectlSoftreload(clock, "replace-pods", "web", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.out).To(HavePrefix("workerpool/web pod replacement requested (softreload.dev/replacePodsAt=2026-11-28T12:04:05Z)"), "stdout")
		wp := getPool(ns, "web")
		Expect(wp.Annotations).To(BeComparableTo(
			map[string]string{"team": "shop", workersv1alpha1.ReplacePodsAtAnnotation: "2026-11-28T12:04:05Z"}), "annotations")
		Expect(wp.Spec).To(BeComparableTo(before.Spec), "the spec changed")
		Expect(wp.Annotations).NotTo(HaveKey(workersv1alpha1.RestartedAtAnnotation), "a replacement is no reload")
	})

	It("asks for nothing new a second time in the same second", func() {
		r := kubectlSoftreload(clock, "replace-pods", "web", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.out).To(Equal("workerpool/web pod replacement already requested at 2026-11-28T12:04:05Z\n"))
	})

	It("makes a later request a new one", func() {
		later := now.Add(time.Minute)
		Expect(kubectlSoftreload(func() time.Time { return later }, "replace-pods", "web", "-n", ns).err).NotTo(HaveOccurred())
		Expect(getPool(ns, "web").Annotations).To(HaveKeyWithValue(workersv1alpha1.ReplacePodsAtAnnotation, "2026-11-28T12:05:05Z"))
	})

	It("gives a paused pool the request and a warning that it waits", func() {
		newPool(ns, "held").paused().create()
		r := kubectlSoftreload(clock, "replace-pods", "held", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.errOut).To(containAll("Warning: workerpool/held is paused", "kubectl softreload resume held"))
		Expect(getPool(ns, "held").Annotations).To(HaveKeyWithValue(workersv1alpha1.ReplacePodsAtAnnotation, "2026-11-28T12:04:05Z"))
	})

	It("names a pool that does not exist", func() {
		r := kubectlSoftreload(clock, "replace-pods", "nope", "-n", ns)
		Expect(r.err).To(MatchError(ContainSubstring(`"nope"`)))
	})
})

// The steps run in order on one pool: each says what it did and leaves
// spec.paused as it says, and the merge patch leaves the rest of the spec
// alone.
var _ = Describe("kubectl softreload pause and resume", Ordered, Label(suite.ControlPlane), func() {
	const ns = "plugin-pause"
	BeforeAll(func() {
		namespace(ns)
		newPool(ns, "web").create()
	})

	DescribeTable("set spec.paused and nothing else",
		func(args []string, out string, paused bool) {
			Expect(run(append(args, "-n", ns)...)).To(Equal(out), "stdout of %s", strings.Join(args, " "))
			wp := getPool(ns, "web")
			Expect(wp.Spec.Paused).To(Equal(paused), "spec.paused after %s", strings.Join(args, " "))
			Expect(wp.Spec.Groups).To(HaveLen(1), "after %s: spec changed beyond paused: %+v", strings.Join(args, " "), wp.Spec)
			Expect(wp.Spec.Groups[0].Count).To(BeEquivalentTo(4), "after %s: spec changed beyond paused: %+v", strings.Join(args, " "), wp.Spec)
			Expect(wp.Spec.Code.ConfigMapRef).NotTo(BeNil(), "after %s: spec changed beyond paused: %+v", strings.Join(args, " "), wp.Spec)
		},
		Entry("pause", []string{"pause", "web"}, "workerpool/web paused\n", true),
		Entry("pause again", []string{"pause", "web"}, "workerpool/web already paused\n", true),
		Entry("resume", []string{"resume", "web"}, "workerpool/web resumed\n", false),
		Entry("resume again", []string{"resume", "web"}, "workerpool/web is not paused\n", false),
	)
})

var _ = Describe("kubectl softreload rollback", Ordered, Label(suite.ControlPlane), func() {
	const ns = "plugin-rollback"
	BeforeAll(func() {
		namespace(ns)
		shop(ns)
	})
	rollbackTo := func(pool string) string {
		GinkgoHelper()
		return getPool(ns, pool).Annotations[workersv1alpha1.RollbackToAnnotation]
	}

	It("refuses a revision whose snapshot was pruned", func() {
		Expect(runErr("rollback", "shop", "--to", "rev-2", "-n", ns)).To(containAll(
			`workerpool "shop"`, "revision rev-2 is in the history but its snapshot is no longer kept",
			"revisions that can be rolled back to: rev-0, rev-1, rev-3, rev-4"))
		Expect(rollbackTo("shop")).To(BeEmpty(), "a refused rollback wrote %s", workersv1alpha1.RollbackToAnnotation)
	})

	It("refuses a revision that does not exist", func() {
		Expect(runErr("rollback", "shop", "--to", "rev-9", "-n", ns)).
			To(ContainSubstring("no revision rev-9: it is neither in the history nor kept as a snapshot"))
		Expect(rollbackTo("shop")).To(BeEmpty(), "a refused rollback wrote %s", workersv1alpha1.RollbackToAnnotation)
	})

	It("refuses an empty --to", func() {
		Expect(runErr("rollback", "shop", "--to", "", "-n", ns)).To(ContainSubstring("--to needs a revision name"))
	})

	It("goes without --to to the newest completed revision with a kept snapshot", func() {
		Expect(run("rollback", "shop", "-n", ns)).To(Equal("workerpool/shop rolling back to revision rev-1 (current revision rev-3)\n"), "stdout")
		Expect(rollbackTo("shop")).To(Equal("rev-1"), workersv1alpha1.RollbackToAnnotation)
		Expect(run("rollback", "shop", "-n", ns)).To(ContainSubstring("workerpool/shop rollback to revision rev-1 already requested"))
	})

	It("goes --to a kept snapshot older than the history, with no warning", func() {
		r := kubectlSoftreload(nil, "rollback", "shop", "--to", "rev-0", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.errOut).To(BeEmpty(), "unexpected warning")
		Expect(rollbackTo("shop")).To(Equal("rev-0"), workersv1alpha1.RollbackToAnnotation)
	})

	It("aborts a rollout in flight --to the current revision", func() {
		run("rollback", "shop", "--to", "rev-3", "-n", ns)
		Expect(rollbackTo("shop")).To(Equal("rev-3"), workersv1alpha1.RollbackToAnnotation)
	})

	It("goes --to a revision that never completed, with a warning", func() {
		r := kubectlSoftreload(nil, "rollback", "shop", "--to", "rev-4", "-n", ns)
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.out).To(ContainSubstring("workerpool/shop rolling back to revision rev-4 (current revision rev-3)"))
		Expect(r.errOut).To(ContainSubstring("Warning: revision rev-4 never completed on every pod (Failed)"))
		Expect(rollbackTo("shop")).To(Equal("rev-4"), workersv1alpha1.RollbackToAnnotation)
	})

	It("does nothing --to the revision every pod already runs", func() {
		newPool(ns, "steady").revisions("rev-1", "rev-1").record("rev-1", "CodeChanged", "Complete", time.Hour, time.Hour).create()
		snapshot(ns, "steady", "rev-1")
		Expect(run("rollback", "steady", "--to", "rev-1", "-n", ns)).
			To(ContainSubstring("workerpool/steady already runs revision rev-1; nothing to roll back"))
		Expect(rollbackTo("steady")).To(BeEmpty(), workersv1alpha1.RollbackToAnnotation)
	})

	It("says why there is nothing to roll back to", func() {
		newPool(ns, "first").revisions("rev-1", "rev-1").record("rev-1", "CodeChanged", "Complete", time.Hour, time.Hour).create()
		snapshot(ns, "first", "rev-1")
		Expect(runErr("rollback", "first", "-n", ns)).To(ContainSubstring(
			`workerpool "first" in namespace "` + ns + `": nothing to roll back to: the history has no revision older than the current one, rev-1`))

		newPool(ns, "pruned").revisions("rev-2", "rev-2").
			record("rev-2", "CodeChanged", "Complete", time.Hour, time.Hour).
			record("rev-1", "CodeChanged", "Failed", 2*time.Hour, 0).
			record("rev-0", "CodeChanged", "Superseded", 3*time.Hour, 3*time.Hour).
			create()
		snapshot(ns, "pruned", "rev-2")
		snapshot(ns, "pruned", "rev-1")
		Expect(runErr("rollback", "pruned", "-n", ns)).To(ContainSubstring(
			"nothing to roll back to: no revision older than the current one, rev-2, completed and still has a snapshot: rev-1 never completed (Failed); rev-0 has no kept snapshot"))

		newPool(ns, "new").create()
		Expect(runErr("rollback", "new", "-n", ns)).To(ContainSubstring("nothing to roll back to: the pool has no current revision yet"))
	})
})

var _ = Describe("Bad input", Ordered, Label(suite.ControlPlane), func() {
	const ns, other = "plugin-bad-input", "plugin-bad-input-other"
	BeforeAll(func() {
		namespace(ns)
		newPool(ns, "web").create()
		namespace(other)
	})

	DescribeTable("is refused, saying what is wrong",
		func(args []string, want string) {
			Expect(runErr(args...)).To(ContainSubstring(want))
		},
		Entry("no pool name", []string{"status"}, "a WorkerPool name is required; usage: kubectl softreload status POOL"),
		Entry("two pool names", []string{"reload", "web", "api"}, "one WorkerPool name expected, got 2"),
		Entry("status of a missing pool", []string{"status", "nope", "-n", ns}, `workerpool "nope" not found in namespace "`+ns+`"`),
		Entry("history of a missing pool", []string{"history", "nope", "-n", ns}, `workerpool "nope" not found in namespace "`+ns+`"`),
		Entry("reload of a missing pool", []string{"reload", "nope", "-n", ns}, `workerpool "nope" not found in namespace "`+ns+`"`),
		Entry("pause of a missing pool", []string{"pause", "nope", "-n", ns}, `workerpool "nope" not found in namespace "`+ns+`"`),
		Entry("resume of a missing pool", []string{"resume", "nope", "-n", ns}, `workerpool "nope" not found in namespace "`+ns+`"`),
		Entry("rollback of a missing pool", []string{"rollback", "nope", "-n", ns}, `workerpool "nope" not found in namespace "`+ns+`"`),
		Entry("a pool in another namespace", []string{"status", "web", "-n", other}, `workerpool "web" not found in namespace "`+other+`"`),
		Entry("the kubeconfig's namespace is default", []string{"status", "web"}, `workerpool "web" not found in namespace "default"`),
		Entry("an output format status does not write", []string{"status", "web", "-n", ns, "-o", "wide"}, `unknown output format "wide": use json or yaml`),
		Entry("an output format history does not write", []string{"history", "web", "-n", ns, "-o", "name"}, `unknown output format "name": use json or yaml`),
		Entry("an unknown command", []string{"restart", "web"}, `unknown command "restart"`),
		Entry("an unknown flag", []string{"rollback", "web", "--revision", "x"}, "unknown flag: --revision"),
	)
})

// Completions asked for the way kubectl does for a plugin
// (kubectl_complete-softreload runs kubectl-softreload __complete ...).
var _ = Describe("Completion", Ordered, Label(suite.ControlPlane), func() {
	const ns = "plugin-completion"
	BeforeAll(func() {
		namespace(ns)
		shop(ns)
		newPool(ns, "web").create()
		newPool(ns, "worker").create()
	})

	DescribeTable("completes pools and rollback targets",
		func(args []string, want []string) {
			out := run(append([]string{"__complete"}, args...)...)
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if !strings.HasPrefix(line, ":") { // the last line is the directive
					got = append(got, line)
				}
			}
			Expect(got).To(BeComparableTo(want), "completions of %v", args)
		},
		Entry("every pool", []string{"status", "-n", ns, ""}, []string{"shop", "web", "worker"}),
		Entry("pools by prefix", []string{"rollback", "-n", ns, "w"}, []string{"web", "worker"}),
		Entry("one pool only", []string{"reload", "-n", ns, "web", ""}, nil),
		Entry("no pool elsewhere", []string{"pause", "-n", "default", ""}, nil),
		Entry("kept rollback targets, newest first, without the current",
			[]string{"rollback", "shop", "-n", ns, "--to", ""},
			[]string{"rev-4\tCodeChanged Failed", "rev-1\tSpecChanged Superseded", "rev-0\tolder than the history"}),
	)
})
