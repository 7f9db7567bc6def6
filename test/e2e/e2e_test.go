// Package e2e runs softreload whole, on one machine: a real kube-apiserver
// and etcd, the manager as a process, and three agent pods (real agent
// processes with pod-bound tokens, running the walkthrough's Python app on
// real sockets), under continuous load on every pod, through rollouts and
// through real faults: processes killed and signalled, the API server and
// the manager stopped, snapshots that cannot be read.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/podrecord"
)

const rolloutTimeout = 2 * time.Minute

// suite is the running system and what the test holds on to.
type suite struct {
	t *testing.T // the step running
	// top is the whole test, for what outlives a step.
	top      *testing.T
	ctx      context.Context
	cluster  *local.Cluster
	c        client.Client
	ns       string
	pods     []*local.Pod
	rec      *podrecord.Recorder
	load     *load.Generator
	gateways map[string]*local.Gateway
	app      map[string]string
	// budget is how many pods may reload at once: the pool's
	// maxUnavailable of its three pods.
	budget int
	// gatewayPIDs are each pod's gateway workers, as first seen.
	gatewayPIDs map[string][]int
}

// TestPodsUnderLoad is the pod protocol end to end. Its steps share one
// system and run in order; each leaves the pool Available for the next.
func TestPodsUnderLoad(t *testing.T) {
	s := start(t)

	steps := []struct {
		name string
		run  func(*suite)
	}{
		{"a code change reloads every pod within the budget", (*suite).codeChange},
		{"broken code fails on one pod, which rolls itself back", (*suite).brokenCode},
		{"the manager killed mid-rollout", (*suite).managerKilled},
		{"the API server stopped for 20 seconds", (*suite).apiServerDown},
		{"an agent killed with SIGKILL", (*suite).agentKilled},
		{"SIGHUP to an agent", (*suite).agentHangup},
		{"an agent restarted while the API server is down", (*suite).agentRestartedWithoutAPI},
		{"a newer revision while a fetch waits", (*suite).newerRevisionDuringFetch},
		{"the manager down for 2 minutes across a new revision", (*suite).managerDown},
	}
	for _, step := range steps {
		ok := t.Run(step.name, func(t *testing.T) {
			s.t = t
			step.run(s)
			s.noFailedRequests()
			s.gatewaysHeld()
		})
		if !ok {
			t.FailNow()
		}
	}
}

// start brings up the control plane, the manager and three pods of the
// walkthrough's pool, waits until they serve, and starts the load.
func start(t *testing.T) *suite {
	ctrllog.SetLogger(logr.Discard()) // the test's clients; the processes log to files
	ctx := t.Context()
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cluster, err := local.Start(ctx, local.Options{Dir: dir, Namespace: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cluster.Stop(); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
		if t.Failed() {
			t.Log(local.LogTails(dir, 60))
		}
	})
	s := &suite{
		t: t, top: t, ctx: ctx, cluster: cluster, c: cluster.Client(), ns: cluster.Namespace(),
		gateways: map[string]*local.Gateway{}, gatewayPIDs: map[string][]int{},
	}
	if s.app, err = local.ExampleApp(root); err != nil {
		t.Fatal(err)
	}
	s.must(s.c.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: local.ExampleCode, Namespace: s.ns},
		Data:       s.app,
	}))
	pool, err := local.ExampleWorkerPool(root)
	s.must(err)
	pool.Namespace = s.ns
	s.must(s.c.Create(ctx, pool))
	s.budget, err = intstr.GetScaledValueFromIntOrPercent(pool.Spec.Strategy.MaxUnavailable, 3, true)
	s.must(err)
	s.rec, err = podrecord.Start(ctx, kubernetes.NewForConfigOrDie(cluster.Config()), s.ns, "")
	s.must(err)
	s.must(cluster.StartManager())

	offset, err := local.FreePortOffset(3, local.ExampleWebPort, local.ExampleGWPort)
	s.must(err)
	labels := map[string]string{"app": "hello", v1alpha1.PoolLabel: local.ExamplePool}
	for i := range 3 {
		p, err := cluster.AddPod(ctx, "hello-"+strconv.Itoa(i), offset+local.PortStep*i, labels)
		s.must(err)
		s.pods = append(s.pods, p)
	}
	first := s.waitRolledOut("the pods start", "")
	for _, p := range s.pods {
		g, err := local.DialGateway(p.Addr(local.ExampleGWPort))
		s.must(err)
		t.Cleanup(func() { g.Close() })
		s.gateways[p.Name] = g
		st := workers(ctx, t, p)
		s.gatewayPIDs[p.Name] = st.PIDs("gateway")
		if got := strconv.Itoa(s.gatewayPIDs[p.Name][0]); got != s.gateways[p.Name].PID {
			t.Fatalf("pod %s: the agent says the gateway is pid %s, the gateway says %s", p.Name, got, s.gateways[p.Name].PID)
		}
		s.answers(p, first, "Hello from softreload")
	}

	var targets []string
	for _, p := range s.pods {
		targets = append(targets, "http://"+p.Addr(local.ExampleWebPort)+"/")
	}
	s.load = load.Start(targets, load.Options{Workers: 2, Pause: 20 * time.Millisecond})
	t.Cleanup(func() { s.load.Stop() })
	time.Sleep(time.Second) // some load before the first change
	return s
}

// codeChange: a new greeting in the code ConfigMap reloads every pod, never
// more than maxUnavailable (1) at once, replacing every web worker, and the
// answers switch to the new code.
func (s *suite) codeChange() {
	before := s.webPIDs()
	rev := s.changeCode("greeting.txt", "Hello again\n")
	s.waitRolledOut("the rollout of "+rev, rev)
	s.withinBudget()
	after := s.webPIDs()
	for _, p := range s.pods {
		for _, pid := range after[p.Name] {
			if slices.Contains(before[p.Name], pid) {
				s.t.Errorf("pod %s: web worker %d served before the reload and still does (before %v, after %v)", p.Name, pid, before[p.Name], after[p.Name])
			}
		}
		s.answers(p, rev, "Hello again")
		if n := s.rec.TimesAsked(p.Name, rev); n != 1 {
			s.t.Errorf("pod %s was sent revision %s %d times, want once", p.Name, rev, n)
		}
	}
}

// brokenCode: a worker that exits at start fails the first pod's reload;
// that pod keeps its workers (the agent rolls back by itself), the pool
// turns Degraded with reason ReloadFailed, and no other pod is sent the
// revision.
func (s *suite) brokenCode() {
	good := s.currentRevision()
	before := s.webPIDs()
	rev := s.changeCode("worker.py", "import sys\nsys.exit('this revision is broken on purpose')\n")
	waitFor(s.ctx, s.t, "the pool turns Degraded", rolloutTimeout, func() (bool, string) {
		pool, desc := getPool(s.ctx, s.c, s.ns)
		if pool == nil {
			return false, desc
		}
		d := condition(pool, v1alpha1.ConditionDegraded)
		return d != nil && d.Status == metav1.ConditionTrue && d.Reason == v1alpha1.ReasonReloadFailed, desc
	})
	// With rollback: Auto, the pod that failed is sent the good revision
	// again and reports it Ready.
	waitFor(s.ctx, s.t, "every pod serves the good revision", rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			v := s.rec.Pod(p.Name)
			if v.Desired != good || v.Report.State != v1alpha1.AgentReady || v.Report.Revision != good {
				return false, s.describePods()
			}
		}
		return true, ""
	})
	var tried []string
	for _, p := range s.pods {
		if s.rec.TimesAsked(p.Name, rev) > 0 {
			tried = append(tried, p.Name)
		}
	}
	if len(tried) != 1 {
		s.t.Errorf("pods sent the broken revision: %v, want exactly one\n%s", tried, s.describePods())
	}
	after := s.webPIDs()
	for _, p := range s.pods {
		if !slices.Equal(before[p.Name], after[p.Name]) {
			s.t.Errorf("pod %s: web workers %v became %v: the old ones should have kept serving", p.Name, before[p.Name], after[p.Name])
		}
		s.answers(p, good, "Hello again")
	}
	s.withinBudget()
}

// managerKilled: the manager dies (SIGKILL) once the rollout has begun;
// another one takes over from what the API server holds, completes the
// rollout within the budget, and sends no pod the revision twice.
func (s *suite) managerKilled() {
	s.app["worker.py"] = s.readExample("worker.py") // repair the code
	rev := s.changeCode("greeting.txt", "Hello, third time\n")
	waitFor(s.ctx, s.t, "the rollout begins", rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			if s.rec.Pod(p.Name).Desired == rev {
				return true, ""
			}
		}
		return false, s.describePods()
	})
	s.must(s.cluster.KillManager())
	s.t.Logf("the manager killed with the pods at:\n%s", s.describePods())
	time.Sleep(2 * time.Second) // the agent of the pod already asked reloads meanwhile
	s.must(s.cluster.StartManager())
	s.waitRolledOut("the rollout of "+rev+" after the restart", rev)
	s.withinBudget()
	for _, p := range s.pods {
		if n := s.rec.TimesAsked(p.Name, rev); n != 1 {
			s.t.Errorf("pod %s was sent revision %s %d times, want once", p.Name, rev, n)
		}
		s.answers(p, rev, "Hello, third time")
	}
}

// apiServerDown: the API server stops as soon as the first pod's agent has
// fetched the new revision. That pod completes its reload while the API
// server is down and every worker keeps serving; once the API server is
// back, the pods' reports and the pool's status catch up and the rollout
// completes.
func (s *suite) apiServerDown() {
	rev := s.changeCode("greeting.txt", "Hello after the outage\n")
	var asked *local.Pod
	waitFor(s.ctx, s.t, "an agent begins the reload", rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			if workers(s.ctx, s.t, p).Agent.Revision == rev {
				asked = p
				return true, ""
			}
		}
		return false, s.describePods()
	})
	s.must(s.cluster.StopAPIServer())
	outage := time.Now()
	s.t.Logf("the API server stopped with the pods at:\n%s", s.describePods())
	waitFor(s.ctx, s.t, "the asked pod reloads while the API server is down", 15*time.Second, func() (bool, string) {
		st := workers(s.ctx, s.t, asked)
		return st.Agent.State == v1alpha1.AgentReady && st.Agent.Running == rev, fmt.Sprintf("%+v", st.Agent)
	})
	s.answers(asked, rev, "Hello after the outage")
	time.Sleep(20*time.Second - time.Since(outage))
	if _, failed, errs := load.Total(s.load.Snapshot()); failed > 0 {
		s.t.Errorf("%d requests failed while the API server was down: %v", failed, errs)
	}
	s.must(s.cluster.StartAPIServer())
	s.waitRolledOut("the rollout of "+rev+" after the outage", rev)
	s.withinBudget()
	for _, p := range s.pods {
		s.answers(p, rev, "Hello after the outage")
	}
}

// changeCode sets one file of the code ConfigMap and returns the revision
// the pool makes of it.
func (s *suite) changeCode(file, content string) string {
	s.t.Helper()
	s.rec.ResetMax()
	s.app[file] = content
	cm := &corev1.ConfigMap{}
	s.must(s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: local.ExampleCode}, cm))
	cm.Data = map[string]string{}
	for k, v := range s.app {
		cm.Data[k] = v
	}
	known := s.snapshots()
	s.must(s.c.Update(s.ctx, cm))
	// The new revision is the new snapshot: the rollout may be over (or
	// rolled back) before the pool's status could be read.
	return s.waitNewRevision(known)
}

// snapshots returns the pool's revision snapshots: their names and
// revisions.
func (s *suite) snapshots() map[string]string {
	list := &corev1.ConfigMapList{}
	s.must(s.c.List(s.ctx, list, client.InNamespace(s.ns), client.MatchingLabels{v1alpha1.PoolNameLabel: local.ExamplePool}))
	out := map[string]string{}
	for _, cm := range list.Items {
		out[cm.Name] = cm.Labels[v1alpha1.RevisionLabel]
	}
	return out
}

// waitRolledOut waits until every pod serves the pool's update revision,
// ready, and the pool says so; it returns that revision. want, if set, is
// the revision expected: until the pool's status names it, the status may
// still tell of the rollout before.
func (s *suite) waitRolledOut(what, want string) string {
	s.t.Helper()
	var rev string
	waitFor(s.ctx, s.t, what, rolloutTimeout, func() (bool, string) {
		pool, desc := getPool(s.ctx, s.c, s.ns)
		if pool == nil {
			return false, desc
		}
		desc += s.describePods()
		rev = pool.Status.UpdateRevision
		avail := condition(pool, v1alpha1.ConditionAvailable)
		if rev == "" || want != "" && rev != want || pool.Status.CurrentRevision != rev || pool.Status.ReadyPods != 3 || pool.Status.UpdatedPods != 3 ||
			avail == nil || avail.Status != metav1.ConditionTrue {
			return false, desc
		}
		for _, p := range s.pods {
			v := s.rec.Pod(p.Name)
			if v.Desired != rev || v.Report.Revision != rev || v.Report.State != v1alpha1.AgentReady {
				return false, desc
			}
		}
		return true, ""
	})
	return rev
}

func (s *suite) currentRevision() string {
	pool, desc := getPool(s.ctx, s.c, s.ns)
	if pool == nil {
		s.t.Fatal(desc)
	}
	return pool.Status.CurrentRevision
}

// withinBudget checks that no more pods reloaded at once since the step's
// code change than the pool's maxUnavailable allows.
func (s *suite) withinBudget() {
	s.t.Helper()
	if n, when := s.rec.Max(); n > s.budget {
		s.t.Errorf("%d pods were reloading at once, maxUnavailable allows %d:\n%s", n, s.budget, when)
	}
}

// answers checks that pod p answers with the greeting, from revision rev.
func (s *suite) answers(p *local.Pod, rev, greeting string) {
	s.t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	want := fmt.Sprintf("%s (revision %s)\n", greeting, rev)
	for range 4 { // most likely every worker
		resp, err := client.Get("http://" + p.Addr(local.ExampleWebPort) + "/")
		if err != nil {
			s.t.Errorf("pod %s: %v", p.Name, err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != want {
			s.t.Errorf("pod %s answered %q (%v), want %q", p.Name, body, err, want)
			return
		}
	}
}

func (s *suite) webPIDs() map[string][]int {
	out := map[string][]int{}
	for _, p := range s.pods {
		out[p.Name] = workers(s.ctx, s.t, p).PIDs("web")
	}
	return out
}

// noFailedRequests checks the load so far: every request answered.
func (s *suite) noFailedRequests() {
	s.t.Helper()
	ok, failed, errs := load.Total(s.load.Snapshot())
	if failed > 0 {
		s.t.Errorf("%d of %d requests failed: %v", failed, ok+failed, errs)
	}
	if ok == 0 {
		s.t.Error("no request was answered")
	}
	s.t.Logf("load so far: %d requests answered, %d failed", ok, failed)
}

// gatewaysHeld checks that every gateway still answers on the connection
// opened at the start, from the same process, and that the agents still
// run the gateway workers they started with.
func (s *suite) gatewaysHeld() {
	s.t.Helper()
	for _, p := range s.pods {
		if err := s.gateways[p.Name].Echo("still there?"); err != nil {
			s.t.Errorf("pod %s: the connection opened at the start: %v", p.Name, err)
		}
		if got := workers(s.ctx, s.t, p).PIDs("gateway"); !slices.Equal(got, s.gatewayPIDs[p.Name]) {
			s.t.Errorf("pod %s: gateway workers %v, want %v (never reloaded)", p.Name, got, s.gatewayPIDs[p.Name])
		}
	}
}

func (s *suite) describePods() string {
	return s.rec.String()
}

func (s *suite) readExample(name string) string {
	root, err := envtest.RepoRoot()
	s.must(err)
	app, err := local.ExampleApp(root)
	s.must(err)
	return app[name]
}

func (s *suite) must(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}
