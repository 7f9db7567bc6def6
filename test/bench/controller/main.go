// Command controller benchmarks the WorkerPool controller on a real API
// server: 500 pods (objects only), test agents that answer at once, and
// maxUnavailable 10%. It measures the time from a ConfigMap edit to the last
// pod updated, the API writes per pod, and the controller's CPU time and
// peak memory, and prints a table.
//
// The controller runs in a child process (this binary again, with
// -controller), so that its CPU and memory are its own and not the agents'.
//
//	KUBEBUILDER_ASSETS=... go run ./test/bench/controller [-pods 500] [-max-unavailable 10%]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/rollout"
	"github.com/softreload/softreload/internal/testing/envtest"
)

func main() {
	var (
		asController   = flag.Bool("controller", false, "Run as the controller process (internal).")
		kubeconfig     = flag.String("controller-kubeconfig", "", "Kubeconfig of the controller process (internal).")
		pods           = flag.Int("pods", 500, "Pods in the pool.")
		maxUnavailable = flag.String("max-unavailable", "10%", "The pool's maxUnavailable.")
	)
	flag.Parse()
	var err error
	if *asController {
		err = runController(*kubeconfig)
	} else {
		err = run(*pods, intstr.Parse(*maxUnavailable))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const (
	namespace = "bench"
	poolName  = "web"
	codeName  = "web-code"
)

// result is one measured rollout.
type result struct {
	pods, budget            int
	toFirstSent, toLastDone time.Duration
	maxInFlight             int
	agentWrites             int64
	controller              stats
	cpuDuring               time.Duration
}

func run(pods int, maxUnavailable intstr.IntOrString) error {
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := env.Client

	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: codeName, Namespace: namespace},
		Data: map[string]string{"server.py": "print('v1')"}}); err != nil {
		return err
	}
	for i := range pods {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("web-%03d", i), Namespace: namespace, Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}}},
		}
		if err := c.Create(ctx, pod); err != nil {
			return err
		}
	}
	ag, err := startAgents(ctx, env.Config)
	if err != nil {
		return err
	}

	ctl, err := startController(env)
	if err != nil {
		return err
	}
	defer ctl.kill()

	pool := &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Name: poolName, Namespace: namespace},
		Spec: workersv1alpha1.WorkerPoolSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Code:     workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: codeName}},
			Groups:   []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"python3", "server.py"}, Count: 4}},
			Strategy: workersv1alpha1.RolloutStrategy{MaxUnavailable: &maxUnavailable},
		},
	}
	if err := c.Create(ctx, pool); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: %d pods, first revision rolling out\n", pods)
	v1, err := waitComplete(ctx, c, pods, "")
	if err != nil {
		return err
	}

	// The measured rollout.
	ag.reset()
	cpu0, err := ctl.cpu()
	if err != nil {
		return err
	}
	before, err := ctl.stats()
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: codeName}, cm); err != nil {
		return err
	}
	cm.Data = map[string]string{"server.py": "print('v2')"}
	start := time.Now()
	if err := c.Update(ctx, cm); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: code edited, second revision rolling out\n")
	if _, err := waitComplete(ctx, c, pods, v1); err != nil {
		return err
	}
	first, last, maxInFlight, agentWrites := ag.since(start)
	cpu1, err := ctl.cpu()
	if err != nil {
		return err
	}
	after, err := ctl.stats()
	if err != nil {
		return err
	}

	printTable(os.Stdout, result{
		pods: pods, budget: rollout.ResolveMaxUnavailable(&maxUnavailable, pods),
		toFirstSent: first, toLastDone: last, maxInFlight: maxInFlight, agentWrites: agentWrites,
		controller: after.minus(before), cpuDuring: cpu1 - cpu0,
	}, maxUnavailable.String())
	return nil
}

// waitComplete waits for the pool's status to say that every pod runs one
// revision other than not, and returns it.
func waitComplete(ctx context.Context, c client.Client, pods int, not string) (string, error) {
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		pool := &workersv1alpha1.WorkerPool{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: poolName}, pool); err != nil {
			return "", err
		}
		st := pool.Status
		if st.CurrentRevision != "" && st.CurrentRevision != not && st.CurrentRevision == st.UpdateRevision &&
			int(st.UpdatedPods) == pods {
			return st.CurrentRevision, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", fmt.Errorf("the rollout did not complete in 10 minutes")
}

func printTable(w io.Writer, r result, maxUnavailable string) {
	perPod := func(n int64) string { return fmt.Sprintf("%d (%.2f per pod)", n, float64(n)/float64(r.pods)) }
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Controller: %d pods, maxUnavailable %s (%d at once), agents answering at once\n", r.pods, maxUnavailable, r.budget)
	fmt.Fprintf(tw, "measure\tvalue\n")
	fmt.Fprintf(tw, "-------\t-----\n")
	fmt.Fprintf(tw, "ConfigMap edit to first pod told\t%s\n", r.toFirstSent.Round(time.Millisecond))
	fmt.Fprintf(tw, "ConfigMap edit to last pod updated\t%s\n", r.toLastDone.Round(time.Millisecond))
	fmt.Fprintf(tw, "most pods reloading at once\t%d (budget %d)\n", r.maxInFlight, r.budget)
	fmt.Fprintf(tw, "reconciles\t%d\n", r.controller.Reconciles)
	fmt.Fprintf(tw, "controller API writes\t%s\n", perPod(r.controller.total()))
	for _, k := range r.controller.keys() {
		fmt.Fprintf(tw, "  %s\t%d\n", k, r.controller.Writes[k])
	}
	fmt.Fprintf(tw, "agent API writes\t%s\n", perPod(r.agentWrites))
	fmt.Fprintf(tw, "controller CPU during the rollout\t%s\n", r.cpuDuring.Round(time.Millisecond))
	fmt.Fprintf(tw, "controller peak memory (VmHWM)\t%.1f MiB\n", float64(r.controller.PeakRSSKiB)/1024)
	_ = tw.Flush()
}

// The controller process.

// controller is the child process that runs the reconciler.
type controller struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
	mu  sync.Mutex
}

func startController(env *envtest.Env) (*controller, error) {
	user, err := env.Environment().AddUser(crenvtest.User{Name: "bench-controller", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding the controller's user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "softreload-bench-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-controller", "-controller-kubeconfig", path)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the controller process: %w", err)
	}
	return &controller{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

// stats asks the controller process for its counters.
func (c *controller) stats() (stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s stats
	if _, err := fmt.Fprintln(c.in, "stats"); err != nil {
		return s, fmt.Errorf("asking the controller for its stats: %w", err)
	}
	line, err := c.out.ReadBytes('\n')
	if err != nil {
		return s, fmt.Errorf("reading the controller's stats: %w", err)
	}
	return s, json.Unmarshal(line, &s)
}

// cpu returns the CPU time (user and system) the controller process used.
func (c *controller) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("reading the controller's CPU time: %w", err)
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th of them, in clock ticks (100 a second
	// on Linux).
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

func (c *controller) kill() {
	_ = c.in.Close()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// The test agents.

// agents answer for every pod at once: told a revision, they report
// Reloading and then Ready. They count their writes and, from their watch,
// the most pods in flight at once.
type agents struct {
	c      client.Client
	mu     sync.Mutex
	pods   map[string]rollout.Pod
	maxIn  int
	writes int64
	first  time.Time
	last   time.Time
}

func startAgents(ctx context.Context, cfg *rest.Config) (*agents, error) {
	scheme := envtest.NewScheme()
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	w, err := wc.Watch(ctx, &corev1.PodList{}, client.InNamespace(namespace))
	if err != nil {
		return nil, err
	}
	a := &agents{c: wc, pods: map[string]rollout.Pod{}}
	go func() {
		var rv string
		for {
			for ev := range w.ResultChan() {
				if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted {
					rv = pod.ResourceVersion
					a.observe(ctx, pod)
				}
			}
			// The API server closes a watch that falls behind a burst: go
			// on from the last event seen.
			for {
				if ctx.Err() != nil {
					return
				}
				var err error
				w, err = wc.Watch(ctx, &corev1.PodList{}, client.InNamespace(namespace),
					&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
				if err == nil {
					break
				}
				fmt.Fprintf(os.Stderr, "bench: watching pods again: %v\n", err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	return a, nil
}

func (a *agents) observe(ctx context.Context, pod *corev1.Pod) {
	p := rollout.Pod{Name: pod.Name, Desired: pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation], Report: report(pod)}
	a.mu.Lock()
	old := a.pods[pod.Name]
	a.pods[pod.Name] = p
	n := 0
	for _, q := range a.pods {
		if rollout.InFlight(q) {
			n++
		}
	}
	a.maxIn = max(a.maxIn, n)
	now := time.Now()
	told := p.Desired != "" && p.Desired != old.Desired
	if told && a.first.IsZero() {
		a.first = now
	}
	if rollout.Runs(p, p.Desired) && !rollout.Runs(old, p.Desired) {
		a.last = now
	}
	a.mu.Unlock()
	if told {
		go a.reload(ctx, pod.Name, p.Desired)
	}
}

func (a *agents) reload(ctx context.Context, name, rev string) {
	a.write(ctx, name, workersv1alpha1.AgentStatus{Revision: rev, State: workersv1alpha1.AgentReloading, Ready: 3, Total: 4})
	a.write(ctx, name, workersv1alpha1.AgentStatus{Revision: rev, Running: rev, State: workersv1alpha1.AgentReady, Ready: 4, Total: 4})
}

func (a *agents) write(ctx context.Context, name string, st workersv1alpha1.AgentStatus) {
	b, _ := json.Marshal(st)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{workersv1alpha1.StatusAnnotation: string(b)}}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := a.c.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch)); err != nil {
		fmt.Fprintf(os.Stderr, "bench: agent of %s: %v\n", name, err)
	}
	a.mu.Lock()
	a.writes++
	a.mu.Unlock()
}

func (a *agents) reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.maxIn, a.writes, a.first, a.last = 0, 0, time.Time{}, time.Time{}
}

// since returns, from start: the time to the first pod told a revision and
// to the last pod updated, the most pods in flight and the agents' writes.
func (a *agents) since(start time.Time) (time.Duration, time.Duration, int, int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.first.Sub(start), a.last.Sub(start), a.maxIn, a.writes
}

func report(pod *corev1.Pod) *workersv1alpha1.AgentStatus {
	raw, ok := pod.Annotations[workersv1alpha1.StatusAnnotation]
	if !ok {
		return nil
	}
	st := &workersv1alpha1.AgentStatus{}
	if json.Unmarshal([]byte(raw), st) != nil {
		return nil
	}
	return st
}

// loadKubeconfig reads a kubeconfig the way the manager's ctrl.GetConfig
// does: no client-side rate limit, the API server's fairness decides.
func loadKubeconfig(path string) (*rest.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(b)
	if err != nil {
		return nil, err
	}
	cfg.QPS = -1
	return cfg, nil
}
