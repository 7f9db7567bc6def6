package plugin_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

func TestReload(t *testing.T) {
	ns := namespace(t)
	newPool(ns, "web").annotation("team", "shop").create(t)
	now := time.Date(2026, 11, 28, 13, 4, 5, 0, time.FixedZone("CET", 3600))
	clock := func() time.Time { return now }

	r := kubectlSoftreload(t, clock, "reload", "web", "-n", ns)
	must(t, r.err)
	if want := "workerpool/web reload requested (softreload.dev/restartedAt=2026-11-28T12:04:05Z)\n"; r.out != want {
		t.Errorf("stdout = %q, want %q", r.out, want)
	}
	got := getPool(t, ns, "web").Annotations
	want := map[string]string{"team": "shop", workersv1alpha1.RestartedAtAnnotation: "2026-11-28T12:04:05Z"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}

	t.Run("a second reload in the same second asks for nothing new", func(t *testing.T) {
		r := kubectlSoftreload(t, clock, "reload", "web", "-n", ns)
		must(t, r.err)
		wantContains(t, r.out, "workerpool/web reload already requested at 2026-11-28T12:04:05Z")
	})

	t.Run("a later reload is a new request", func(t *testing.T) {
		later := now.Add(time.Minute)
		must(t, kubectlSoftreload(t, func() time.Time { return later }, "reload", "web", "-n", ns).err)
		if got := getPool(t, ns, "web").Annotations[workersv1alpha1.RestartedAtAnnotation]; got != "2026-11-28T12:05:05Z" {
			t.Errorf("restartedAt = %q, want 2026-11-28T12:05:05Z", got)
		}
	})

	t.Run("a paused pool gets the request and a warning that it waits", func(t *testing.T) {
		newPool(ns, "held").paused().create(t)
		r := kubectlSoftreload(t, clock, "reload", "held", "-n", ns)
		must(t, r.err)
		wantContains(t, r.errOut, "Warning: workerpool/held is paused", "kubectl softreload resume held")
		if got := getPool(t, ns, "held").Annotations[workersv1alpha1.RestartedAtAnnotation]; got != "2026-11-28T12:04:05Z" {
			t.Errorf("restartedAt = %q", got)
		}
	})
}

func TestPauseResume(t *testing.T) {
	ns := namespace(t)
	newPool(ns, "web").create(t)

	steps := []struct {
		args   []string
		out    string
		paused bool
	}{
		{[]string{"pause", "web"}, "workerpool/web paused\n", true},
		{[]string{"pause", "web"}, "workerpool/web already paused\n", true},
		{[]string{"resume", "web"}, "workerpool/web resumed\n", false},
		{[]string{"resume", "web"}, "workerpool/web is not paused\n", false},
	}
	for _, step := range steps {
		out := run(t, append(step.args, "-n", ns)...)
		if out != step.out {
			t.Errorf("%s: stdout = %q, want %q", strings.Join(step.args, " "), out, step.out)
		}
		wp := getPool(t, ns, "web")
		if wp.Spec.Paused != step.paused {
			t.Errorf("after %s: spec.paused = %t, want %t", strings.Join(step.args, " "), wp.Spec.Paused, step.paused)
		}
		// The merge patch leaves the rest of the spec alone.
		if len(wp.Spec.Groups) != 1 || wp.Spec.Groups[0].Count != 4 || wp.Spec.Code.ConfigMapRef == nil {
			t.Errorf("after %s: spec changed beyond paused: %+v", strings.Join(step.args, " "), wp.Spec)
		}
	}
}

func TestRollback(t *testing.T) {
	ns := namespace(t)
	shop(t, ns)
	rollbackTo := func(t *testing.T, pool string) string {
		t.Helper()
		return getPool(t, ns, pool).Annotations[workersv1alpha1.RollbackToAnnotation]
	}

	t.Run("refuses a revision whose snapshot was pruned", func(t *testing.T) {
		msg := runErr(t, "rollback", "shop", "--to", "rev-2", "-n", ns)
		wantContains(t, msg, `workerpool "shop"`, "revision rev-2 is in the history but its snapshot is no longer kept",
			"revisions that can be rolled back to: rev-0, rev-1, rev-3, rev-4")
		if got := rollbackTo(t, "shop"); got != "" {
			t.Errorf("a refused rollback wrote %s=%q", workersv1alpha1.RollbackToAnnotation, got)
		}
	})

	t.Run("refuses a revision that does not exist", func(t *testing.T) {
		msg := runErr(t, "rollback", "shop", "--to", "rev-9", "-n", ns)
		wantContains(t, msg, "no revision rev-9: it is neither in the history nor kept as a snapshot")
		if got := rollbackTo(t, "shop"); got != "" {
			t.Errorf("a refused rollback wrote %s=%q", workersv1alpha1.RollbackToAnnotation, got)
		}
	})

	t.Run("refuses an empty --to", func(t *testing.T) {
		wantContains(t, runErr(t, "rollback", "shop", "--to", "", "-n", ns), "--to needs a revision name")
	})

	t.Run("without --to goes to the newest completed revision with a kept snapshot", func(t *testing.T) {
		out := run(t, "rollback", "shop", "-n", ns)
		if want := "workerpool/shop rolling back to revision rev-1 (current revision rev-3)\n"; out != want {
			t.Errorf("stdout = %q, want %q", out, want)
		}
		if got := rollbackTo(t, "shop"); got != "rev-1" {
			t.Errorf("%s = %q, want rev-1", workersv1alpha1.RollbackToAnnotation, got)
		}
		out = run(t, "rollback", "shop", "-n", ns)
		wantContains(t, out, "workerpool/shop rollback to revision rev-1 already requested")
	})

	t.Run("--to a kept snapshot older than the history", func(t *testing.T) {
		r := kubectlSoftreload(t, nil, "rollback", "shop", "--to", "rev-0", "-n", ns)
		must(t, r.err)
		if r.errOut != "" {
			t.Errorf("unexpected warning: %s", r.errOut)
		}
		if got := rollbackTo(t, "shop"); got != "rev-0" {
			t.Errorf("%s = %q, want rev-0", workersv1alpha1.RollbackToAnnotation, got)
		}
	})

	t.Run("--to the current revision aborts a rollout in flight", func(t *testing.T) {
		run(t, "rollback", "shop", "--to", "rev-3", "-n", ns)
		if got := rollbackTo(t, "shop"); got != "rev-3" {
			t.Errorf("%s = %q, want rev-3", workersv1alpha1.RollbackToAnnotation, got)
		}
	})

	t.Run("--to a revision that never completed is allowed, with a warning", func(t *testing.T) {
		r := kubectlSoftreload(t, nil, "rollback", "shop", "--to", "rev-4", "-n", ns)
		must(t, r.err)
		wantContains(t, r.out, "workerpool/shop rolling back to revision rev-4 (current revision rev-3)")
		wantContains(t, r.errOut, "Warning: revision rev-4 never completed on every pod (Failed)")
		if got := rollbackTo(t, "shop"); got != "rev-4" {
			t.Errorf("%s = %q, want rev-4", workersv1alpha1.RollbackToAnnotation, got)
		}
	})

	t.Run("--to the revision every pod already runs does nothing", func(t *testing.T) {
		newPool(ns, "steady").revisions("rev-1", "rev-1").record("rev-1", "CodeChanged", "Complete", time.Hour, time.Hour).create(t)
		snapshot(t, ns, "steady", "rev-1")
		out := run(t, "rollback", "steady", "--to", "rev-1", "-n", ns)
		wantContains(t, out, "workerpool/steady already runs revision rev-1; nothing to roll back")
		if got := rollbackTo(t, "steady"); got != "" {
			t.Errorf("%s = %q, want none", workersv1alpha1.RollbackToAnnotation, got)
		}
	})

	t.Run("nothing to roll back to", func(t *testing.T) {
		newPool(ns, "first").revisions("rev-1", "rev-1").record("rev-1", "CodeChanged", "Complete", time.Hour, time.Hour).create(t)
		snapshot(t, ns, "first", "rev-1")
		wantContains(t, runErr(t, "rollback", "first", "-n", ns),
			`workerpool "first" in namespace "`+ns+`": nothing to roll back to: the history has no revision older than the current one, rev-1`)

		newPool(ns, "pruned").revisions("rev-2", "rev-2").
			record("rev-2", "CodeChanged", "Complete", time.Hour, time.Hour).
			record("rev-1", "CodeChanged", "Failed", 2*time.Hour, 0).
			record("rev-0", "CodeChanged", "Superseded", 3*time.Hour, 3*time.Hour).
			create(t)
		snapshot(t, ns, "pruned", "rev-2")
		snapshot(t, ns, "pruned", "rev-1")
		wantContains(t, runErr(t, "rollback", "pruned", "-n", ns),
			"nothing to roll back to: no revision older than the current one, rev-2, completed and still has a snapshot: rev-1 never completed (Failed); rev-0 has no kept snapshot")

		newPool(ns, "new").create(t)
		wantContains(t, runErr(t, "rollback", "new", "-n", ns), "nothing to roll back to: the pool has no current revision yet")
	})
}

func TestBadInput(t *testing.T) {
	ns := namespace(t)
	newPool(ns, "web").create(t)
	other := namespace(t)

	cases := map[string]struct {
		args []string
		want string
	}{
		"no pool name":                            {[]string{"status"}, "a WorkerPool name is required; usage: kubectl softreload status POOL"},
		"two pool names":                          {[]string{"reload", "web", "api"}, "one WorkerPool name expected, got 2"},
		"status of a missing pool":                {[]string{"status", "nope", "-n", ns}, `workerpool "nope" not found in namespace "` + ns + `"`},
		"history of a missing pool":               {[]string{"history", "nope", "-n", ns}, `workerpool "nope" not found in namespace "` + ns + `"`},
		"reload of a missing pool":                {[]string{"reload", "nope", "-n", ns}, `workerpool "nope" not found in namespace "` + ns + `"`},
		"pause of a missing pool":                 {[]string{"pause", "nope", "-n", ns}, `workerpool "nope" not found in namespace "` + ns + `"`},
		"resume of a missing pool":                {[]string{"resume", "nope", "-n", ns}, `workerpool "nope" not found in namespace "` + ns + `"`},
		"rollback of a missing pool":              {[]string{"rollback", "nope", "-n", ns}, `workerpool "nope" not found in namespace "` + ns + `"`},
		"a pool in another namespace":             {[]string{"status", "web", "-n", other}, `workerpool "web" not found in namespace "` + other + `"`},
		"the kubeconfig's namespace is default":   {[]string{"status", "web"}, `workerpool "web" not found in namespace "default"`},
		"an output format status does not write":  {[]string{"status", "web", "-n", ns, "-o", "wide"}, `unknown output format "wide": use json or yaml`},
		"an output format history does not write": {[]string{"history", "web", "-n", ns, "-o", "name"}, `unknown output format "name": use json or yaml`},
		"an unknown command":                      {[]string{"restart", "web"}, `unknown command "restart"`},
		"an unknown flag":                         {[]string{"rollback", "web", "--revision", "x"}, "unknown flag: --revision"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			wantContains(t, runErr(t, tc.args...), tc.want)
		})
	}
}

// TestCompletion asks for completions the way kubectl does for a plugin
// (kubectl_complete-softreload runs kubectl-softreload __complete ...).
func TestCompletion(t *testing.T) {
	ns := namespace(t)
	shop(t, ns)
	newPool(ns, "web").create(t)
	newPool(ns, "worker").create(t)
	completions := func(t *testing.T, args ...string) []string {
		t.Helper()
		out := run(t, append([]string{"__complete"}, args...)...)
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, ":") { // the last line is the directive
				got = append(got, line)
			}
		}
		return got
	}
	cases := map[string]struct {
		args []string
		want []string
	}{
		"every pool":        {[]string{"status", "-n", ns, ""}, []string{"shop", "web", "worker"}},
		"pools by prefix":   {[]string{"rollback", "-n", ns, "w"}, []string{"web", "worker"}},
		"one pool only":     {[]string{"reload", "-n", ns, "web", ""}, nil},
		"no pool elsewhere": {[]string{"pause", "-n", "default", ""}, nil},
		"kept rollback targets, newest first, without the current": {
			[]string{"rollback", "shop", "-n", ns, "--to", ""},
			[]string{"rev-4\tCodeChanged Failed", "rev-1\tSpecChanged Superseded", "rev-0\tolder than the history"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, completions(t, tc.args...)); diff != "" {
				t.Errorf("completions (-want +got):\n%s", diff)
			}
		})
	}
}
