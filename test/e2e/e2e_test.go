//go:build e2e

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
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/gatewaycheck"
	"github.com/softreload/softreload/internal/testing/podrecord"
	testsuite "github.com/softreload/softreload/internal/testing/suite"
)

const rolloutTimeout = 2 * time.Minute

// wsClientsPerPod is how many WebSocket clients send messages on each
// pod's gateway: 21 in all.
const wsClientsPerPod = 7

// suite is the running system and what the specs hold on to.
type suite struct {
	ctx context.Context
	// dir holds the processes' logs.
	dir      string
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
	// wsLoad is WebSocket clients sending messages on every gateway, one
	// after another, through the rollouts until the first step that kills
	// a gateway (stopGatewayLoad); nil once stopped.
	wsLoad *local.GatewayLoad
}

// s is the system every step runs on, started once for the suite.
var s *suite

var _ = BeforeSuite(func() { s = start() })

// The pod protocol end to end. Its steps share one system and run in
// order; each leaves the pool Available for the next, and a step that
// fails skips the rest.
var _ = Describe("Pods under load", Ordered, Label("e2e", testsuite.ControlPlane), func() {
	// After each step: every request answered, every gateway held; on a
	// failure, the processes' logs.
	AfterEach(func() { s.stepHeld() })

	It("a code change reloads every pod within the budget", func() { s.codeChange() })
	It("broken code fails on one pod, which rolls itself back", func() { s.brokenCode() })
	It("the manager killed mid-rollout", func() { s.managerKilled() })
	It("the API server stopped for 20 seconds", func() { s.apiServerDown() })
	It("an agent killed with SIGKILL", func() { s.agentKilled() })
	It("SIGHUP to an agent", func() { s.agentHangup() })
	It("an agent restarted while the API server is down", func() { s.agentRestartedWithoutAPI() })
	It("a newer revision while a fetch waits", func() { s.newerRevisionDuringFetch() })
	It("the manager down for 2 minutes across a new revision", func() { s.managerDown() })
})

// start brings up the control plane, the manager and three pods of the
// walkthrough's pool, waits until they serve, and starts the load; all of
// it stops when the suite ends.
func start() *suite {
	ctx, cancel := context.WithCancel(context.Background())
	root, err := envtest.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	dir := GinkgoT().TempDir()
	// The agents' workers run python3 by name; the gateway's needs the
	// websockets library.
	Expect(local.UsePythonWithWebsockets()).To(Succeed())
	cluster, err := local.Start(ctx, local.Options{Dir: dir, Namespace: "e2e"})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		// The recorder's watch ends first: the API server waits for open
		// watches when it stops.
		cancel()
		Expect(cluster.Stop()).To(Succeed(), "stopping the cluster")
	})
	s := &suite{
		ctx: ctx, dir: dir, cluster: cluster, c: cluster.Client(), ns: cluster.Namespace(),
		gateways: map[string]*local.Gateway{}, gatewayPIDs: map[string][]int{},
	}
	// Every gateway connection, the first and those redialled by a step,
	// lives until the suite ends.
	DeferCleanup(func() {
		for _, g := range s.gateways {
			g.Close()
		}
	})
	s.app, err = local.ExampleApp(root)
	Expect(err).NotTo(HaveOccurred())
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
		s.gateways[p.Name] = g
		st := workers(ctx, p)
		s.gatewayPIDs[p.Name] = st.PIDs("gateway")
		Expect(strconv.Itoa(s.gatewayPIDs[p.Name][0])).To(Equal(s.gateways[p.Name].PID), "pod %s: the gateway's pid, as the agent and the gateway say", p.Name)
		s.answers(p, first, "Hello from softreload")
	}

	var targets []string
	for _, p := range s.pods {
		targets = append(targets, s.target(p))
	}
	s.load = load.Start(targets, load.Options{Workers: 2, Pause: 20 * time.Millisecond})
	DeferCleanup(func() { s.load.Stop() })
	var gateways []string
	for _, p := range s.pods {
		gateways = append(gateways, p.Addr(local.ExampleGWPort))
	}
	s.wsLoad, err = local.StartGatewayLoad(gateways, wsClientsPerPod, 100*time.Millisecond)
	s.must(err)
	ws := s.wsLoad
	DeferCleanup(func() { _, _, _ = ws.Stop() }) // checked by stopGatewayLoad, if the steps got there
	// Some load on every pod before the first change.
	Eventually(func() []int64 {
		var ok []int64
		for _, st := range s.load.Snapshot() {
			ok = append(ok, st.OK)
		}
		return ok
	}).WithTimeout(rolloutTimeout).Should(HaveEach(BeNumerically(">", 0)), "the load reaches every pod")
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
			Expect(before[p.Name]).NotTo(ContainElement(pid), "pod %s: web worker %d served before the reload and still does (before %v, after %v)", p.Name, pid, before[p.Name], after[p.Name])
		}
		s.answers(p, rev, "Hello again")
		Expect(s.rec.TimesAsked(p.Name, rev)).To(Equal(1), "pod %s was sent revision %s that many times, want once", p.Name, rev)
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
	tried := s.rolledBack(good, rev)
	Expect(tried).To(HaveLen(1), "pods sent the broken revision, want exactly one\n%s", s.describePods())
	after := s.webPIDs()
	for _, p := range s.pods {
		Expect(after[p.Name]).To(Equal(before[p.Name]), "pod %s: web workers changed: the old ones should have kept serving", p.Name)
		s.answers(p, good, "Hello again")
	}
	s.withinBudget()
}

// rolledBack waits until the pool turns Degraded with reason ReloadFailed
// and every pod serves revision good again (rollback: Auto sends the pod
// that failed the good revision again), and returns the pods that were
// sent revision bad.
func (s *suite) rolledBack(good, bad string) (tried []string) {
	GinkgoHelper()
	waitFor("the pool turns Degraded", rolloutTimeout, func() (bool, string) {
		pool, desc := getPool(s.ctx, s.c, s.ns)
		if pool == nil {
			return false, desc
		}
		d := meta.FindStatusCondition(pool.Status.Conditions, v1alpha1.ConditionDegraded)
		return d != nil && d.Status == metav1.ConditionTrue && d.Reason == v1alpha1.ReasonReloadFailed, desc
	})
	waitFor("every pod serves the good revision", rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			v := s.rec.Pod(p.Name)
			if v.Desired != good || v.Report.State != v1alpha1.AgentReady || v.Report.Revision != good {
				return false, s.describePods()
			}
		}
		return true, ""
	})
	for _, p := range s.pods {
		if s.rec.TimesAsked(p.Name, bad) > 0 {
			tried = append(tried, p.Name)
		}
	}
	return tried
}

// managerKilled: the manager dies (SIGKILL) once the rollout has begun;
// another one takes over from what the API server holds, completes the
// rollout within the budget, and sends no pod the revision twice.
func (s *suite) managerKilled() {
	s.app["worker.py"] = s.readExample("worker.py") // repair the code
	rev := s.changeCode("greeting.txt", "Hello, third time\n")
	waitFor("the rollout begins", rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			if s.rec.Pod(p.Name).Desired == rev {
				return true, ""
			}
		}
		return false, s.describePods()
	})
	s.must(s.cluster.KillManager())
	logf("the manager killed with the pods at:\n%s", s.describePods())
	// The agents of the pods already told the revision reload meanwhile,
	// with no manager.
	waitFor("the pods told "+rev+" reload with the manager away", rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			v := s.rec.Pod(p.Name)
			if v.Desired == rev && (v.Report.Revision != rev || v.Report.State != v1alpha1.AgentReady) {
				return false, s.describePods()
			}
		}
		return true, ""
	})
	s.must(s.cluster.StartManager())
	s.waitRolledOut("the rollout of "+rev+" after the restart", rev)
	s.withinBudget()
	for _, p := range s.pods {
		Expect(s.rec.TimesAsked(p.Name, rev)).To(Equal(1), "pod %s was sent revision %s that many times, want once", p.Name, rev)
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
	waitFor("an agent begins the reload", rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			if workers(s.ctx, p).Agent.Revision == rev {
				asked = p
				return true, ""
			}
		}
		return false, s.describePods()
	})
	s.must(s.cluster.StopAPIServer())
	outage := time.Now()
	logf("the API server stopped with the pods at:\n%s", s.describePods())
	waitFor("the asked pod reloads while the API server is down", 15*time.Second, func() (bool, string) {
		st := workers(s.ctx, asked)
		return st.Agent.State == v1alpha1.AgentReady && st.Agent.Running == rev, fmt.Sprintf("%+v", st.Agent)
	})
	s.answers(asked, rev, "Hello after the outage")
	time.Sleep(20*time.Second - time.Since(outage)) // the outage itself: not a wait for something
	_, failed, errs := load.Total(s.load.Snapshot())
	Expect(failed).To(BeZero(), "requests failed while the API server was down: %v", errs)
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
	GinkgoHelper()
	known := s.snapshots()
	s.writeCode(file, content)
	// The new revision is the new snapshot: the rollout may be over (or
	// rolled back) before the pool's status could be read.
	return s.waitNewRevision(known)
}

// snapshots returns the pool's revision snapshots: their names and
// revisions.
func (s *suite) snapshots() map[string]string {
	GinkgoHelper()
	known, err := podrecord.Snapshots(s.ctx, s.c, s.ns, local.ExamplePool)
	s.must(err)
	return known
}

// waitRolledOut waits until every pod serves the pool's update revision,
// ready, and the pool says so; it returns that revision. want, if set, is
// the revision expected: until the pool's status names it, the status may
// still tell of the rollout before.
func (s *suite) waitRolledOut(what, want string) string {
	GinkgoHelper()
	var rev string
	waitFor(what, rolloutTimeout, func() (bool, string) {
		pool, desc := getPool(s.ctx, s.c, s.ns)
		if pool == nil {
			return false, desc
		}
		desc += s.describePods()
		rev = pool.Status.UpdateRevision
		avail := meta.FindStatusCondition(pool.Status.Conditions, v1alpha1.ConditionAvailable)
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
		Fail(desc)
	}
	return pool.Status.CurrentRevision
}

// withinBudget checks that no more pods reloaded at once since the step's
// code change than the pool's maxUnavailable allows.
func (s *suite) withinBudget() {
	GinkgoHelper()
	n, when := s.rec.Max()
	Expect(n).To(BeNumerically("<=", s.budget), "pods reloading at once, against maxUnavailable:\n%s", when)
}

// answers checks that pod p answers with the greeting, from revision rev:
// over HTTP, and to a message on the WebSocket connection its gateway has
// held since the start (or since the step that killed it), with no new
// connection.
func (s *suite) answers(p *local.Pod, rev, greeting string) {
	GinkgoHelper()
	gatewaycheck.Answers(p.Name, s.gateways[p.Name], p.Addr(local.ExampleWebPort), rev, greeting)
}

func (s *suite) webPIDs() map[string][]int {
	out := map[string][]int{}
	for _, p := range s.pods {
		out[p.Name] = workers(s.ctx, p).PIDs("web")
	}
	return out
}

// noFailedRequests checks the load so far: every request answered.
func (s *suite) noFailedRequests() {
	GinkgoHelper()
	ok, failed, errs := load.Total(s.load.Snapshot())
	logf("load so far: %d requests answered, %d failed", ok, failed)
	Expect(failed).To(BeZero(), "of %d requests, some failed: %v", ok+failed, errs)
	Expect(ok).NotTo(BeZero(), "no request was answered")
}

// stopGatewayLoad stops the WebSocket clients before a step that kills a
// gateway, and checks that every message they sent was answered, once.
func (s *suite) stopGatewayLoad() {
	GinkgoHelper()
	if s.wsLoad == nil {
		return
	}
	sent, answered, err := s.wsLoad.Stop()
	s.wsLoad = nil
	Expect(err).NotTo(HaveOccurred(), "WebSocket clients: a message lost or answered twice, or a connection dropped")
	Expect(answered).To(Equal(sent), "WebSocket clients: messages answered")
	Expect(answered).To(BeNumerically(">", 0), "WebSocket clients: messages answered")
	logf("WebSocket clients: %d messages sent, each answered once, through the rollouts so far", sent)
}

// gatewaysHeld checks that every gateway still answers on the WebSocket
// connection opened at the start, from the same process, by the code of the
// revision its pod runs now (the business workers answer the gateway's
// messages), and that the agents still run the gateway workers they
// started with.
func (s *suite) gatewaysHeld() {
	GinkgoHelper()
	if s.wsLoad != nil {
		Expect(s.wsLoad.Err()).NotTo(HaveOccurred(), "WebSocket clients: a message lost or answered twice, or a connection dropped")
		logf("WebSocket clients so far: %d messages answered", s.wsLoad.Answered())
	}
	for _, p := range s.pods {
		answer, err := s.gateways[p.Name].Ask("still there?")
		Expect(err).NotTo(HaveOccurred(), "pod %s: the connection opened at the start", p.Name)
		st := workers(s.ctx, p)
		Expect(reloadableRevisions(st)).To(ContainElement(local.AnswerRevision(answer)), "pod %s: the revision of the gateway's answer %q, against the ones its workers run", p.Name, answer)
		Expect(st.PIDs("gateway")).To(Equal(s.gatewayPIDs[p.Name]), "pod %s: gateway workers (never reloaded)", p.Name)
		// The suite's connections are the gateway's only ones: the agent's
		// report (kubectl softreload status) counts them.
		want := int32(1)
		if s.wsLoad != nil {
			want += wsClientsPerPod
		}
		waitFor(fmt.Sprintf("pod %s's report counts its gateway's %d connections", p.Name, want), time.Minute, func() (bool, string) {
			report := s.rec.Pod(p.Name).Report
			for _, g := range report.Groups {
				if g.Name == "gateway" {
					return g.Connections == want, fmt.Sprintf("the report says %d connections", g.Connections)
				}
			}
			return false, fmt.Sprintf("no group gateway in the report %+v", report)
		})
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
	GinkgoHelper()
	Expect(err).NotTo(HaveOccurred())
}
