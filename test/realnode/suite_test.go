//go:build realnode

package realnode

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/supervisor"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/gatewaycheck"
	"github.com/softreload/softreload/internal/testing/node"
	"github.com/softreload/softreload/internal/testing/nodeimage"
	"github.com/softreload/softreload/internal/testing/podrecord"
)

// The example as the README installs it.
const (
	namespace      = metav1.NamespaceDefault
	pool           = local.ExamplePool
	codeConfigMap  = local.ExampleCode
	appContainer   = "app"
	codeContainer  = "softreload-code"
	podSelector    = "app=hello"
	managerNS      = "softreload-system"
	rolloutTimeout = 3 * time.Minute
	poll           = 200 * time.Millisecond
)

// pod is one pod of the example under test, and what the test holds on to.
type pod struct {
	name, uid, ip string
	// gateway is a client's WebSocket connection to the pod's gateway,
	// opened when the pod joined the test: it must hold through every
	// reload, its messages answered by the code the pod runs.
	gateway *local.Gateway
	// gatewayPIDs are the pod's gateway workers when it joined.
	gatewayPIDs []int
	load        *load.Generator
}

func (p *pod) addr(port int) string { return net.JoinHostPort(p.ip, strconv.Itoa(port)) }

// suite is the running system.
type suite struct {
	ctx     context.Context
	root    string
	cluster *node.Cluster
	c       client.Client
	kube    kubernetes.Interface
	bin     string
	tools   map[string]string
	rec     *podrecord.Recorder
	pods    map[string]*pod
	// done holds the final counts of the loads of pods that left the test.
	done []map[string]load.Stats
	app  map[string]string
	// times are the measured times from a change to the last pod updated.
	times []timing
	// ws is the WebSocket clients through the Service (gateway_test.go),
	// while the gateway spec runs.
	ws *local.GatewayLoad
}

type timing struct {
	mode, change string
	took         time.Duration
}

// start builds the cluster, installs softreload and the example as the
// README says, and starts the load.
func start(ctx context.Context) *suite {
	s := &suite{ctx: ctx, pods: map[string]*pod{}, tools: map[string]string{}}
	var err error
	s.root, err = envtest.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	for _, name := range append(slices.Clone(node.Binaries), "kubectl", "helm") {
		out, err := exec.Command(filepath.Join(s.root, "hack", "tools.sh"), "--path", name).Output()
		Expect(err).NotTo(HaveOccurred(), "hack/tools.sh --path %s (make test-node builds every tool first)", name)
		s.tools[name] = strings.TrimSpace(string(out))
	}
	images := s.images()
	s.bin = filepath.Join(node.Dir(), "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(s.bin, "kubectl-softreload"), "./cmd/kubectl-softreload")
	build.Dir = s.root
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "building the kubectl plugin: %s", out)
	for _, t := range []string{"kubectl", "helm"} {
		Expect(os.Symlink(s.tools[t], filepath.Join(s.bin, t))).To(Succeed())
	}

	By("starting the cluster")
	began := time.Now()
	s.cluster, err = node.Start(ctx, node.Options{Binaries: s.tools, Images: images, SandboxImage: nodeimage.PauseRef})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(s.stop)
	fmt.Fprintf(GinkgoWriter, "The cluster is up in %v\n", time.Since(began).Round(100*time.Millisecond))
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	s.c, err = client.New(s.cluster.Config(), client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	s.kube = kubernetes.NewForConfigOrDie(s.cluster.Config())
	// The recorder follows the pods for the whole suite, past this node's
	// context.
	life, cancel := context.WithCancel(context.Background())
	DeferCleanup(cancel)
	s.rec, err = podrecord.Start(life, s.kube, namespace, podSelector)
	Expect(err).NotTo(HaveOccurred())
	s.app, err = local.ExampleApp(s.root)
	Expect(err).NotTo(HaveOccurred())

	By("installing softreload as the README says")
	s.run("helm", "install", "softreload", "charts/softreload", "-n", managerNS, "--create-namespace")
	s.run("kubectl", "-n", managerNS, "rollout", "status", "deployment/softreload-manager", "--timeout=5m")
	By("deploying examples/kubernetes as its README says")
	s.run("kubectl", "apply", "-k", "examples/kubernetes")
	s.run("kubectl", "rollout", "status", "deployment/hello", "--timeout=5m")
	events, err := s.kube.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "reason=FailedCreate"})
	Expect(err).NotTo(HaveOccurred())
	var failed []string
	for _, e := range events.Items {
		failed = append(failed, fmt.Sprintf("%s %s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message))
	}
	Expect(failed).To(BeEmpty(), "FailedCreate events right after helm install and the README's rollout status")

	first := s.waitRolledOut("the pods start", "")
	s.joinPods()
	for _, p := range s.pods {
		s.answers(p, first, "Hello from softreload")
	}
	return s
}

// images lists the image archives make test-node builds: make images
// (DIST, default dist) and DIST/node.
func (s *suite) images() []string {
	dist := os.Getenv("DIST")
	if dist == "" {
		dist = "dist"
	}
	if !filepath.IsAbs(dist) {
		dist = filepath.Join(s.root, dist)
	}
	var out []string
	for _, want := range []string{"manager.tar", "agent.tar", "node/pause.tar", "node/python.tar", "node/code-v1.tar", "node/code-v2.tar", "node/code-broken.tar"} {
		path := filepath.Join(dist, want)
		_, err := os.Stat(path)
		Expect(err).NotTo(HaveOccurred(), "image archive %s (make test-node builds it)", path)
		out = append(out, path)
	}
	return out
}

// stop ends the load and the cluster; on failure it prints every
// process's log and the pods' logs first.
func (s *suite) stop() {
	for _, p := range s.pods {
		s.leave(p)
	}
	if s.ws != nil {
		_, _, _ = s.ws.Stop() // checked by stopServiceClients, if the steps got there
	}
	if CurrentSpecReport().Failed() || os.Getenv("REALNODE_LOGS") != "" {
		if s.rec != nil {
			fmt.Fprintln(GinkgoWriter, s.rec)
		}
		fmt.Fprintln(GinkgoWriter, s.cluster.Logs(60))
		_ = filepath.Walk(filepath.Join(s.cluster.Dir(), "pod-logs"), func(p string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				fmt.Fprintf(GinkgoWriter, "--- %s\n%s\n", p, node.Tail(p, 40))
			}
			return nil
		})
	}
	s.cluster.Stop()
	s.printTimes()
}

func (s *suite) printTimes() {
	if len(s.times) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintln(&b, "Time from a change to the last pod updated:")
	for _, t := range s.times {
		fmt.Fprintf(&b, "  %-10s %-50s %v\n", t.mode, t.change, t.took.Round(10*time.Millisecond))
	}
	fmt.Print(b.String())
	AddReportEntry("times", b.String())
}

// run runs a command of the README (kubectl, helm) from the repository's
// root, as the administrator, with the plugin on PATH.
func (s *suite) run(name string, args ...string) {
	GinkgoHelper()
	cmd := exec.CommandContext(s.ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.root
	cmd.Env = s.cluster.Env()
	for i, e := range cmd.Env {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			cmd.Env[i] = "PATH=" + s.bin + ":" + p
		}
	}
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "%s %s:\n%s", name, strings.Join(args, " "), out)
	fmt.Fprintf(GinkgoWriter, "$ %s %s\n%s", name, strings.Join(args, " "), out)
}

// currentPods lists the example's pods that are not being deleted.
func (s *suite) currentPods() []corev1.Pod {
	GinkgoHelper()
	list, err := s.kube.CoreV1().Pods(namespace).List(s.ctx, metav1.ListOptions{LabelSelector: podSelector})
	Expect(err).NotTo(HaveOccurred())
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// joinPods makes every current pod not yet under test part of it: a
// gateway connection, its gateway PIDs, and load.
func (s *suite) joinPods() {
	GinkgoHelper()
	for _, kp := range s.currentPods() {
		if _, ok := s.pods[kp.Name]; ok {
			continue
		}
		Expect(kp.Status.PodIP).NotTo(BeEmpty(), "pod %s has no IP", kp.Name)
		p := &pod{name: kp.Name, uid: string(kp.UID), ip: kp.Status.PodIP}
		var err error
		p.gateway, err = local.DialGateway(p.addr(local.ExampleGWPort))
		Expect(err).NotTo(HaveOccurred())
		p.gatewayPIDs = s.workers(p).PIDs("gateway")
		Expect(p.gatewayPIDs).To(HaveLen(1), "pod %s: gateway workers", p.name)
		Expect(strconv.Itoa(p.gatewayPIDs[0])).To(Equal(p.gateway.PID), "pod %s: the agent's gateway PID and the one that took the connection", p.name)
		p.load = load.Start([]string{"http://" + p.addr(local.ExampleWebPort) + "/"}, load.Options{Workers: 2, Pause: 20 * time.Millisecond})
		s.pods[p.name] = p
	}
}

// leave takes pod p out of the test: its load stops (and is kept in the
// totals) and its gateway connection closes.
func (s *suite) leave(p *pod) {
	if p.load != nil {
		s.done = append(s.done, p.load.Stop())
		p.load = nil
	}
	if p.gateway != nil {
		p.gateway.Close()
	}
	delete(s.pods, p.name)
}

// socket is the agent's control socket of pod p, in the pod's code volume
// on the node, through a link with a short path: a unix socket's path has
// at most 107 bytes.
func (s *suite) socket(p *pod) string {
	GinkgoHelper()
	path := filepath.Join(s.cluster.KubeletRoot(), "pods", p.uid, "volumes", "kubernetes.io~empty-dir", "softreload-code", "agent.sock")
	link := filepath.Join(s.cluster.Dir(), "sock", p.uid)
	if _, err := os.Lstat(link); err != nil {
		Expect(os.MkdirAll(filepath.Dir(link), 0o755)).To(Succeed())
		Expect(os.Symlink(path, link)).To(Succeed())
	}
	return link
}

// workers asks p's agent, over its control socket, for its workers.
func (s *suite) workers(p *pod) supervisor.Status {
	GinkgoHelper()
	st, err := control.NewClient(s.socket(p)).Status(s.ctx)
	Expect(err).NotTo(HaveOccurred(), "pod %s: agent status", p.name)
	return st
}

func (s *suite) webPIDs() map[string][]int {
	out := map[string][]int{}
	for _, p := range s.pods {
		out[p.name] = s.workers(p).PIDs("web")
	}
	return out
}

// answers checks that pod p answers with the greeting, from revision rev:
// over HTTP, and to a message on the WebSocket connection its gateway has
// held since the pod joined.
func (s *suite) answers(p *pod, rev, greeting string) {
	GinkgoHelper()
	gatewaycheck.Answers(p.name, p.gateway, p.addr(local.ExampleWebPort), rev, greeting)
}

// unchanged checks what every step promises: no request failed, every
// pod is the one it was (UID) with its app container never restarted, and
// every gateway still answers on the WebSocket connection opened when its
// pod joined, from the same process, by the code of the revision the pod
// runs now.
func (s *suite) unchanged() {
	GinkgoHelper()
	ok, failed, errs := s.totals()
	Expect(failed).To(BeZero(), "%d of %d requests failed: %v", failed, ok+failed, errs)
	Expect(ok).To(BeNumerically(">", 0), "no request was answered")
	fmt.Fprintf(GinkgoWriter, "Load so far: %d requests answered, %d failed\n", ok, failed)
	for _, kp := range s.currentPods() {
		p, known := s.pods[kp.Name]
		Expect(known).To(BeTrue(), "pod %s appeared", kp.Name)
		Expect(string(kp.UID)).To(Equal(p.uid), "pod %s was replaced", kp.Name)
		Expect(restarts(&kp, appContainer)).To(BeZero(), "pod %s: restarts of container %s", kp.Name, appContainer)
	}
	Expect(s.currentPods()).To(HaveLen(len(s.pods)), "pods under test")
	for _, p := range s.pods {
		answer, err := p.gateway.Ask("still there?")
		Expect(err).NotTo(HaveOccurred(), "pod %s: the connection opened when it joined", p.name)
		st := s.workers(p)
		Expect(local.AnswerRevision(answer)).To(Equal(st.Agent.Running), "pod %s: the revision of the gateway's answer %q, against the one its workers run", p.name, answer)
		Expect(st.PIDs("gateway")).To(Equal(p.gatewayPIDs), "pod %s: gateway workers (never reloaded)", p.name)
	}
}

func (s *suite) totals() (ok, failed int64, errs []string) {
	all := map[string]load.Stats{}
	add := func(stats map[string]load.Stats, tag string) {
		for k, v := range stats {
			all[k+tag] = v
		}
	}
	for i, d := range s.done {
		add(d, fmt.Sprintf(" (%d)", i))
	}
	for _, p := range s.pods {
		add(p.load.Snapshot(), "")
	}
	return load.Total(all)
}

func restarts(p *corev1.Pod, container string) int32 {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.RestartCount
		}
	}
	return -1
}

// runsFor reports whether the container of p has run, ready, for at least
// d: a container in a crash loop runs for moments at a time.
func runsFor(p *corev1.Pod, container string, d time.Duration) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.Ready && cs.State.Running != nil && time.Since(cs.State.Running.StartedAt.Time) >= d
		}
	}
	return false
}

// budget is how many pods may reload at once: the pool's maxUnavailable
// of the pods under test.
func (s *suite) budget() int {
	GinkgoHelper()
	wp := s.pool()
	n, err := intstr.GetScaledValueFromIntOrPercent(wp.Spec.Strategy.MaxUnavailable, len(s.pods), false)
	Expect(err).NotTo(HaveOccurred())
	return max(n, 1)
}

// withinBudget checks that no more pods reloaded at once since the step's
// change than the pool's maxUnavailable allows.
func (s *suite) withinBudget() {
	GinkgoHelper()
	n, when := s.rec.Max()
	Expect(n).To(BeNumerically("<=", s.budget()), "pods reloading at once; maxUnavailable allows %d:\n%s", s.budget(), when)
}

func (s *suite) pool() *v1alpha1.WorkerPool {
	GinkgoHelper()
	wp := &v1alpha1.WorkerPool{}
	Expect(s.c.Get(s.ctx, client.ObjectKey{Namespace: namespace, Name: pool}, wp)).To(Succeed())
	return wp
}

// changeCode sets files of the code ConfigMap and returns the revision
// the pool makes of it and when the change was written.
func (s *suite) changeCode(files map[string]string) (string, time.Time) {
	GinkgoHelper()
	s.rec.ResetMax()
	for k, v := range files {
		s.app[k] = v
	}
	cm := &corev1.ConfigMap{}
	Expect(s.c.Get(s.ctx, client.ObjectKey{Namespace: namespace, Name: codeConfigMap}, cm)).To(Succeed())
	cm.Data = map[string]string{}
	for k, v := range s.app {
		cm.Data[k] = v
	}
	return s.newRevision(func() { Expect(s.c.Update(s.ctx, cm)).To(Succeed()) })
}

// newRevision runs change and returns the revision it makes: the new
// revision snapshot (the rollout may be over, or rolled back, before the
// pool's status could be read), and when change ran.
func (s *suite) newRevision(change func()) (string, time.Time) {
	GinkgoHelper()
	known := s.snapshots()
	at := time.Now()
	change()
	var rev string
	Eventually(func(g Gomega) {
		for name, r := range s.snapshots() {
			if _, ok := known[name]; !ok {
				rev = r
				return
			}
		}
		g.Expect(known).To(HaveLen(-1), "no new revision snapshot")
	}).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed())
	return rev, at
}

// snapshots returns the pool's revision snapshots: names and revisions.
func (s *suite) snapshots() map[string]string {
	GinkgoHelper()
	known, err := podrecord.Snapshots(s.ctx, s.c, namespace, pool)
	Expect(err).NotTo(HaveOccurred())
	return known
}

// waitRolledOut waits until every pod runs the pool's update revision,
// ready, and the pool says so; it returns that revision. want, if set, is
// the revision expected.
func (s *suite) waitRolledOut(what, want string) string {
	GinkgoHelper()
	var rev string
	Eventually(func(g Gomega) {
		wp := s.pool()
		rev = wp.Status.UpdateRevision
		pods := s.currentPods()
		n := int32(len(pods))
		desc := podrecord.DescribePool(wp) + s.rec.String()
		g.Expect(rev).NotTo(BeEmpty(), desc)
		if want != "" {
			g.Expect(rev).To(Equal(want), desc)
		}
		g.Expect(wp.Status.CurrentRevision).To(Equal(rev), desc)
		g.Expect(wp.Status.ReadyPods).To(Equal(n), desc)
		g.Expect(wp.Status.UpdatedPods).To(Equal(n), desc)
		g.Expect(meta.IsStatusConditionTrue(wp.Status.Conditions, v1alpha1.ConditionAvailable)).To(BeTrue(), desc)
		for _, kp := range pods {
			v := s.rec.Pod(kp.Name)
			g.Expect(v.Desired).To(Equal(rev), desc)
			g.Expect(v.Report.Revision).To(Equal(rev), desc)
			g.Expect(v.Report.State).To(Equal(v1alpha1.AgentReady), desc)
		}
	}).WithTimeout(rolloutTimeout).WithPolling(poll).Should(Succeed(), what)
	return rev
}

// lastUpdated is how long after at the last pod under test was first
// seen Ready at rev.
func (s *suite) lastUpdated(rev string, at time.Time) time.Duration {
	GinkgoHelper()
	var last time.Time
	for name := range s.pods {
		if t := s.rec.Pod(name).ReadyAt[rev]; t.After(last) {
			last = t
		}
	}
	Expect(last.IsZero()).To(BeFalse(), "no pod of the test recorded ready at %s\n%s", rev, s.rec)
	return last.Sub(at)
}

// measured records and prints the time from a change to the last pod
// updated.
func (s *suite) measured(mode, change, rev string, at time.Time) {
	took := s.lastUpdated(rev, at)
	s.times = append(s.times, timing{mode: mode, change: change, took: took})
	fmt.Printf("realnode: %s mode, %s: %v from the change to the last pod updated\n", mode, change, took.Round(10*time.Millisecond))
}

// brokenCode sets files of the code ConfigMap to code that fails, waits
// until the pool is Degraded by it and every pod runs revision good (the
// pool's current one) again, and checks that exactly one pod was sent it;
// it returns the broken revision and that pod. what names the change in
// the measured times.
func (s *suite) brokenCode(good string, files map[string]string, what string) (rev string, tried string) {
	GinkgoHelper()
	rev, at := s.changeCode(files)
	s.waitDegraded(rev)
	s.waitAllAt(good)
	s.measured("ConfigMap", what, good, at)
	var sent []string
	for _, p := range s.pods {
		if s.rec.TimesAsked(p.name, rev) > 0 {
			sent = append(sent, p.name)
		}
	}
	Expect(sent).To(HaveLen(1), "pods sent the broken revision\n%s", s.rec)
	return rev, sent[0]
}

// waitDegraded waits until the pool is Degraded because rev failed on a
// pod.
func (s *suite) waitDegraded(rev string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		wp := s.pool()
		d := meta.FindStatusCondition(wp.Status.Conditions, v1alpha1.ConditionDegraded)
		g.Expect(d).NotTo(BeNil(), podrecord.DescribePool(wp))
		g.Expect(d.Status).To(Equal(metav1.ConditionTrue), podrecord.DescribePool(wp))
		g.Expect(d.Reason).To(Equal(v1alpha1.ReasonReloadFailed), podrecord.DescribePool(wp))
		var result string
		for _, h := range wp.Status.History {
			if h.Revision == rev {
				result = h.Result
			}
		}
		g.Expect(result).To(Equal("RolledBack"), "the history's result of %s\n%s", rev, podrecord.DescribePool(wp))
	}).WithTimeout(rolloutTimeout).WithPolling(poll).Should(Succeed(), "the pool turns Degraded after %s", rev)
}

// waitAllAt waits until every pod is asked rev and runs it, ready.
func (s *suite) waitAllAt(rev string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		for _, kp := range s.currentPods() {
			v := s.rec.Pod(kp.Name)
			g.Expect(v.Desired).To(Equal(rev), s.rec.String())
			g.Expect(v.Report.Revision).To(Equal(rev), s.rec.String())
			g.Expect(v.Report.State).To(Equal(v1alpha1.AgentReady), s.rec.String())
		}
	}).WithTimeout(rolloutTimeout).WithPolling(poll).Should(Succeed(), "every pod runs %s", rev)
}

// completedBefore is the newest revision before current in the pool's
// history that completed: where kubectl softreload rollback goes.
func (s *suite) completedBefore(current string) string {
	GinkgoHelper()
	wp := s.pool()
	seen := false
	for _, h := range wp.Status.History {
		if h.Revision == current {
			seen = true
			continue
		}
		if seen && h.CompletedAt != nil {
			return h.Revision
		}
	}
	Fail(fmt.Sprintf("no completed revision before %s in the history: %+v", current, wp.Status.History))
	return ""
}

// replacedSince checks that every web worker of before is gone.
func (s *suite) replacedSince(before map[string][]int) {
	GinkgoHelper()
	after := s.webPIDs()
	for name, pids := range after {
		for _, pid := range pids {
			Expect(before[name]).NotTo(ContainElement(pid), "pod %s: web worker %d served before the reload and still does", name, pid)
		}
	}
}

// example is a file of the walkthrough's app as the repository holds it.
func (s *suite) example(name string) string {
	GinkgoHelper()
	app, err := local.ExampleApp(s.root)
	Expect(err).NotTo(HaveOccurred())
	return app[name]
}

// anyPod is the first pod under test by name.
func (s *suite) anyPod() *pod {
	names := make([]string, 0, len(s.pods))
	for n := range s.pods {
		names = append(names, n)
	}
	sort.Strings(names)
	return s.pods[names[0]]
}

// restartsOf is the restart count of container in every current pod.
func (s *suite) restartsOf(container string) map[string]int32 {
	GinkgoHelper()
	out := map[string]int32{}
	for _, kp := range s.currentPods() {
		out[kp.Name] = restarts(&kp, container)
	}
	return out
}

func (s *suite) getPod(name string) *corev1.Pod {
	GinkgoHelper()
	kp, err := s.kube.CoreV1().Pods(namespace).Get(s.ctx, name, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	return kp
}

// codeImage is the image of the code container (codeContainer) in the
// pod's spec.
func codeImage(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if c.Name == codeContainer {
			return c.Image
		}
	}
	return ""
}
