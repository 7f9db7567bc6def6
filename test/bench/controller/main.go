// Command controller benchmarks the WorkerPool controller at scale on a real
// API server: pod objects (no kubelet), fake agents that answer at once
// (internal/testing/fakeagent), and maxUnavailable 10%. Each row of its
// table is one run on a fresh control plane:
//
//  1. 500 pods, one pool;
//  2. 5,000 pods, one pool;
//  3. 50 pools of 100 pods, every code ConfigMap edited at once;
//  4. row 2 with 20,000 pods and 5,000 ConfigMaps (4 KiB each) in the same
//     namespace that no pool selects or references.
//
// For each it measures, over the rollout that follows the code edit, the
// time to the first pod told and to the last pod updated, the most pods in
// flight per pool against the budget, the controller's API writes per pod,
// its CPU time and peak memory, and the API server's write rate. Then it
// stops the controller and measures the writes alone: the same pods told
// the same way by the benchmark itself, as fast as the API server takes
// it, with no budget. These are the rollout's own writes and no others, so
// their time is what the API server needs for them on this machine, and
// the rollout's time over theirs is what the controller adds.
//
// The controller runs in a child process (this binary again, with
// -controller), so that its CPU and memory are its own and not the agents'.
//
//	KUBEBUILDER_ASSETS=... go run ./test/bench/controller [-rows 1,2,3,4] [-max-unavailable 10%]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/rollout"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/fakeagent"
)

func main() {
	var (
		asController   = flag.Bool("controller", false, "Run as the controller process (internal).")
		kubeconfig     = flag.String("controller-kubeconfig", "", "Kubeconfig of the controller process (internal).")
		rowList        = flag.String("rows", "1,2,3,4", "The rows of the table to run, by number.")
		maxUnavailable = flag.String("max-unavailable", "10%", "Every pool's maxUnavailable.")
	)
	flag.Parse()
	var err error
	if *asController {
		err = runController(*kubeconfig)
	} else {
		ctrl.SetLogger(logr.Discard())
		err = runRows(*rowList, intstr.Parse(*maxUnavailable))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// scenario is one row of the table.
type scenario struct {
	name                 string
	pools, podsPerPool   int
	otherPods, otherMaps int
}

var scenarios = []scenario{
	{name: "500 pods, 1 pool", pools: 1, podsPerPool: 500},
	{name: "5,000 pods, 1 pool", pools: 1, podsPerPool: 5000},
	{name: "50 pools x 100 pods", pools: 50, podsPerPool: 100},
	{name: "5,000 pods + 20,000 other pods, 5,000 other ConfigMaps", pools: 1, podsPerPool: 5000, otherPods: 20000, otherMaps: 5000},
}

const (
	namespace = "bench"
	// otherMapBytes is the size of each ConfigMap no pool references.
	otherMapBytes = 4096
	// creators is how many objects are created at once.
	creators = 32
)

func (s scenario) pods() int { return s.pools * s.podsPerPool }

func (s scenario) poolName(i int) string {
	if s.pools == 1 {
		return "web"
	}
	return fmt.Sprintf("web-%02d", i)
}

func codeName(pool string) string { return pool + "-code" }

func podName(pool string, i int) string { return fmt.Sprintf("%s-%04d", pool, i) }

// result is one measured rollout.
type result struct {
	scenario
	// row is the row's number in the list above.
	row                     int
	budget                  int
	toFirstSent, toLastDone time.Duration
	// maxInFlight is the most pods in flight at once in any one pool, and
	// overBudget the pools where it exceeded the budget.
	maxInFlight, overBudget int
	agentWrites             int64
	controller              stats
	// cpu is the CPU time of each process during the rollout, cpuWall the
	// time it was measured over, and load the machine's load averages (1
	// minute) at the edit and at the end.
	cpu           cpuTimes
	cpuWall       time.Duration
	load          [2]string
	peakWriteRate int64
	meanWriteRate float64
	// peakBefore and peakHeapBefore are the controller's peak resident
	// memory and peak heap (KiB) before the edit: its start, the first sync
	// and the first rollout. controller.PeakRSSKiB and PeakHeapKiB are
	// those of the measured rollout alone.
	peakBefore, peakHeapBefore int64
	// alone is the same writes' time without the controller.
	alone alone
}

// overAlone is the rollout's time over the same writes' without the
// controller.
func (r result) overAlone() float64 { return r.toLastDone.Seconds() / r.alone.wall.Seconds() }

// peakRSSKiB is the controller's peak resident memory over its life.
func (r result) peakRSSKiB() int64 { return max(r.peakBefore, r.controller.PeakRSSKiB) }

func runRows(list string, maxUnavailable intstr.IntOrString) error {
	var results []result
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > len(scenarios) {
			return fmt.Errorf("-rows: %q is not a row number from 1 to %d", f, len(scenarios))
		}
		s := scenarios[n-1]
		fmt.Fprintf(os.Stderr, "bench: row %d: %s\n", n, s.name)
		r, err := run(s, maxUnavailable)
		if err != nil {
			return fmt.Errorf("row %d (%s): %w", n, s.name, err)
		}
		r.row = n
		results = append(results, r)
		printDetail(os.Stderr, r)
	}
	printTable(os.Stdout, results, maxUnavailable.String())
	return nil
}

func run(s scenario, maxUnavailable intstr.IntOrString) (result, error) {
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		return result{}, err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The API server's fairness decides, not a client-side rate limit.
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = -1, 0
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		return result{}, err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		return result{}, err
	}
	t0 := time.Now()
	if err := createObjects(ctx, c, s); err != nil {
		return result{}, err
	}
	fmt.Fprintf(os.Stderr, "bench: %d pods and %d ConfigMaps created in %s\n",
		s.pods()+s.otherPods, s.pools+s.otherMaps, time.Since(t0).Round(time.Second))

	governed, err := labels.NewRequirement(workersv1alpha1.PoolLabel, selection.Exists, nil)
	if err != nil {
		return result{}, err
	}
	var agentErrs sync.Map
	ag, err := fakeagent.Start(ctx, cfg, fakeagent.Options{
		Namespace: namespace, Selector: labels.NewSelector().Add(*governed), Workers: 4,
		OnError: func(err error) { agentErrs.Store(err.Error(), true) },
	})
	if err != nil {
		return result{}, err
	}
	// A Ready report says which spec each group runs, as the agent's does:
	// the controller reads it, and the API server stores it in the pod.
	var groups []workersv1alpha1.AgentGroupStatus
	for _, g := range newPool("", maxUnavailable).Spec.Groups {
		groups = append(groups, workersv1alpha1.AgentGroupStatus{Name: g.Name, Spec: workersv1alpha1.GroupSpecHash(g)})
	}
	ag.SetGroups(func(string, string) []workersv1alpha1.AgentGroupStatus { return groups })
	ctl, err := startController(env)
	if err != nil {
		return result{}, err
	}
	defer ctl.kill()
	plane, err := children()
	if err != nil {
		return result{}, fmt.Errorf("finding the control plane's processes: %w", err)
	}

	for i := range s.pools {
		if err := c.Create(ctx, newPool(s.poolName(i), maxUnavailable)); err != nil {
			return result{}, err
		}
	}
	fmt.Fprintf(os.Stderr, "bench: first revision rolling out\n")
	v1, err := waitComplete(ctx, c, s, nil)
	if err != nil {
		return result{}, err
	}

	// The measured rollout starts once the agents' own watch, too, shows
	// every pod settled: the pool's status can say so before that watch
	// delivers the agents' last reports, and counting from a view that
	// still has the first rollout in flight would charge it to this one.
	if err := waitSettled(ag); err != nil {
		return result{}, err
	}
	ag.ResetCounts()
	before, err := ctl.resetPeaks()
	if err != nil {
		return result{}, err
	}
	// After the reset: the controller process answers it with a garbage
	// collection, which is the benchmark's, not the rollout's.
	cpu0, err := readCPU(ctl, plane)
	if err != nil {
		return result{}, err
	}
	load0 := loadAverage()
	apiProfile := profileAPIServer(env.Config, os.Getenv("SOFTRELOAD_BENCH_APISERVER_PROFILE"))
	defer apiProfile()
	start := time.Now()
	if err := editCode(ctx, c, s); err != nil {
		return result{}, err
	}
	fmt.Fprintf(os.Stderr, "bench: code edited, second revision rolling out\n")
	if _, err := waitComplete(ctx, c, s, v1); err != nil {
		return result{}, err
	}
	first, last := ag.Times()
	cpu1, err := readCPU(ctl, plane)
	if err != nil {
		return result{}, err
	}
	cpuWall := time.Since(start)
	after, err := ctl.stats()
	if err != nil {
		return result{}, err
	}
	agentErrs.Range(func(k, _ any) bool { fmt.Fprintf(os.Stderr, "bench: %s\n", k); return true })

	r := result{
		scenario: s, budget: rollout.ResolveMaxUnavailable(&maxUnavailable, s.podsPerPool),
		toFirstSent: first.Sub(start), toLastDone: last.Sub(start),
		agentWrites: ag.Writes(), controller: after.minus(before), cpu: cpu1.minus(cpu0), cpuWall: cpuWall,
		load:       [2]string{load0, loadAverage()},
		peakBefore: before.PeakRSSKiB, peakHeapBefore: before.PeakHeapKiB,
	}
	for _, n := range ag.MaxInFlightByPool() {
		r.maxInFlight = max(r.maxInFlight, n)
		if n > r.budget {
			r.overBudget++
		}
	}
	r.peakWriteRate, r.meanWriteRate = writeRates(ag.WritesPerSecond(), after.WritesPerSecond, start, last)

	ctl.kill()
	apiProfile()
	if err := waitSettled(ag); err != nil {
		return result{}, err
	}
	if r.alone, err = measureAlone(ctx, c, ag, s, plane); err != nil {
		return result{}, err
	}
	return r, nil
}

// aloneRevision is the revision the writes alone tell every pod.
const aloneRevision = "alone"

// alone is the time the same pods take without the controller: the
// benchmark tells every governed pod a revision itself, with the
// controller's patch, as fast as the API server takes them (creators at
// once, no budget), and the fake agents answer as they do in a rollout.
// These are the rollout's writes and no others. They run after the
// rollout, against an etcd with two more rollouts in its history, and
// with more writes at once: a rollout on the same machine can be a little
// quicker (docs/benchmarks.md has the runs), but not by much.
type alone struct {
	wall   time.Duration
	writes int64
	cpu    cpuTimes
}

// apiPerWrite is the API server's and etcd's CPU per write.
func (a alone) apiPerWrite() time.Duration {
	if a.writes == 0 {
		return 0
	}
	return (a.cpu.apiserver + a.cpu.etcd) / time.Duration(a.writes)
}

// measureAlone measures the writes alone, once the controller is stopped
// and the agents have settled.
func measureAlone(ctx context.Context, c client.Client, ag *fakeagent.Agents, s scenario, plane map[string]int) (alone, error) {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		workersv1alpha1.DesiredRevisionAnnotation: aloneRevision}}})
	if err != nil {
		return alone{}, err
	}
	names := make(chan string)
	errs := make(chan error, creators)
	ag.ResetCounts()
	cpu0, err := readCPU(nil, plane)
	if err != nil {
		return alone{}, err
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range creators {
		wg.Go(func() {
			for name := range names {
				pod := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
				pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
				if err := c.Patch(ctx, pod, client.RawPatch(types.StrategicMergePatchType, body)); err != nil {
					errs <- fmt.Errorf("the writes alone: telling pod %s: %w", name, err)
					return
				}
			}
		})
	}
	func() {
		defer close(names)
		for i := range s.pools {
			for j := range s.podsPerPool {
				select {
				case names <- podName(s.poolName(i), j):
				case err = <-errs:
					return
				}
			}
		}
	}()
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	if err != nil {
		return alone{}, err
	}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Minute, true, func(context.Context) (bool, error) {
		return ag.Running(aloneRevision) == s.pods(), nil
	})
	if err != nil {
		return alone{}, fmt.Errorf("the writes alone: %d of %d pods report revision %q ready: %w", ag.Running(aloneRevision), s.pods(), aloneRevision, err)
	}
	_, last := ag.Times()
	cpu1, err := readCPU(nil, plane)
	if err != nil {
		return alone{}, err
	}
	return alone{wall: last.Sub(start), writes: int64(s.pods()) + ag.Writes(), cpu: cpu1.minus(cpu0)}, nil
}

// createObjects creates the code ConfigMaps, the governed pods (labelled
// for their pool, as the injection webhook requires) and the objects no
// pool selects or references, a few at a time.
func createObjects(ctx context.Context, c client.Client, s scenario) error {
	objs := make(chan client.Object, creators)
	errs := make(chan error, creators)
	var wg sync.WaitGroup
	for range creators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for obj := range objs {
				if err := c.Create(ctx, obj); err != nil {
					errs <- fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
					return
				}
			}
		}()
	}
	send := func(obj client.Object) bool {
		select {
		case objs <- obj:
			return true
		case <-ctx.Done():
			return false
		case err := <-errs:
			errs <- err
			return false
		}
	}
	other := strings.Repeat("x", otherMapBytes)
	func() {
		defer close(objs)
		for i := range s.pools {
			pool := s.poolName(i)
			if !send(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: codeName(pool), Namespace: namespace},
				Data: map[string]string{"server.py": "print('v1')"}}) {
				return
			}
			for j := range s.podsPerPool {
				if !send(newPod(podName(pool, j), map[string]string{"app": pool, workersv1alpha1.PoolLabel: pool})) {
					return
				}
			}
		}
		for i := range s.otherMaps {
			if !send(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("other-%05d", i), Namespace: namespace},
				Data: map[string]string{"settings.json": other}}) {
				return
			}
		}
		for i := range s.otherPods {
			if !send(newPod(fmt.Sprintf("other-%05d", i), map[string]string{"app": "other"})) {
				return
			}
		}
	}()
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

func newPod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}}},
	}
}

func newPool(name string, maxUnavailable intstr.IntOrString) *workersv1alpha1.WorkerPool {
	return &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: workersv1alpha1.WorkerPoolSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Code:     workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: codeName(name)}},
			Groups:   []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"python3", "server.py"}, Count: 4}},
			Strategy: workersv1alpha1.RolloutStrategy{MaxUnavailable: &maxUnavailable},
		},
	}
}

// editCode changes every pool's code at once.
func editCode(ctx context.Context, c client.Client, s scenario) error {
	var wg sync.WaitGroup
	errs := make([]error, s.pools)
	for i := range s.pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: codeName(s.poolName(i)), Namespace: namespace}}
			patch := client.RawPatch("application/merge-patch+json", []byte(`{"data":{"server.py":"print('v2')"}}`))
			if err := c.Patch(ctx, cm, patch); err != nil {
				errs[i] = fmt.Errorf("editing the code of pool %s: %w", s.poolName(i), err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// waitComplete waits until every pool's status says that all its pods run
// one revision, other than the pool's revision in not, and returns them.
// It watches the pools: listing them every few milliseconds, as it did
// before, cost the API server the CPU it shares with what is measured.
func waitComplete(ctx context.Context, c client.WithWatch, s scenario, not map[string]string) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	done := map[string]string{}
	see := func(p *workersv1alpha1.WorkerPool) {
		st := p.Status
		if st.CurrentRevision != "" && st.CurrentRevision != not[p.Name] && st.CurrentRevision == st.UpdateRevision &&
			int(st.UpdatedPods) == s.podsPerPool {
			done[p.Name] = st.CurrentRevision
		} else {
			delete(done, p.Name)
		}
	}
	for {
		pools := &workersv1alpha1.WorkerPoolList{}
		if err := c.List(ctx, pools, client.InNamespace(namespace)); err != nil {
			return nil, fmt.Errorf("the rollout did not complete: listing the pools: %w", err)
		}
		for i := range pools.Items {
			see(&pools.Items[i])
		}
		if len(done) == s.pools {
			return done, nil
		}
		w, err := c.Watch(ctx, &workersv1alpha1.WorkerPoolList{}, client.InNamespace(namespace),
			&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: pools.ResourceVersion}})
		if err != nil {
			return nil, fmt.Errorf("the rollout did not complete: watching the pools: %w", err)
		}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*workersv1alpha1.WorkerPool)
			if !ok {
				break // an error (the version is too old): list again
			}
			see(p)
			if len(done) == s.pools {
				w.Stop()
				return done, nil
			}
		}
		w.Stop()
	}
}

// waitSettled waits until the agents see no pod in flight.
func waitSettled(ag *fakeagent.Agents) error {
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		return ag.InFlight() == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the agents still see %d pods in flight after the first rollout: %w", ag.InFlight(), err)
	}
	return nil
}

// writeRates returns the most writes in one second and the mean rate, of
// the agents' and the controller's writes (all the writes the API server
// receives during the rollout), from start to end.
func writeRates(agents, controller map[int64]int64, start, end time.Time) (peak int64, mean float64) {
	var total int64
	for sec := start.Unix(); sec <= end.Unix(); sec++ {
		n := agents[sec] + controller[sec]
		peak = max(peak, n)
		total += n
	}
	if d := end.Sub(start).Seconds(); d > 0 {
		mean = float64(total) / d
	}
	return peak, mean
}

func printTable(w io.Writer, rs []result, maxUnavailable string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Controller at scale: maxUnavailable %s per pool, fake agents answering at once, one run per row\n", maxUnavailable)
	fmt.Fprintf(tw, "row\tedit to first told\tedit to last updated\twrites alone (x)\tmost in flight (budget)\tctl writes/pod\tctl CPU\tCPU/pod\tctl peak memory\tAPI writes/s (peak, mean)\n")
	for _, r := range rs {
		budget := fmt.Sprintf("%d (%d)", r.maxInFlight, r.budget)
		if r.overBudget > 0 {
			budget += fmt.Sprintf(" OVER in %d pools", r.overBudget)
		}
		fmt.Fprintf(tw, "%d. %s\t%s\t%s\t%s (%.2f)\t%s\t%.2f\t%s\t%.2f ms\t%.1f MiB\t%d, %.0f\n",
			r.row, r.name, r.toFirstSent.Round(time.Millisecond), r.toLastDone.Round(10*time.Millisecond),
			r.alone.wall.Round(10*time.Millisecond), r.overAlone(), budget,
			float64(r.controller.total())/float64(r.pods()), r.cpu.controller.Round(10*time.Millisecond),
			float64(r.cpu.controller.Microseconds())/1000/float64(r.pods()),
			float64(r.peakRSSKiB())/1024, r.peakWriteRate, r.meanWriteRate)
	}
	_ = tw.Flush()
}

// printDetail writes what one row's figures are made of.
func printDetail(w io.Writer, r result) {
	row := r.row
	fmt.Fprintf(w, "bench: row %d: %d reconciles; controller writes %d:", row, r.controller.Reconciles, r.controller.total())
	keys := r.controller.keys()
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, " %s %d,", k, r.controller.Writes[k])
	}
	fmt.Fprintf(w, " agent writes %d\n", r.agentWrites)
	mib := func(kib int64) float64 { return float64(kib) / 1024 }
	fmt.Fprintf(w, "bench: row %d: controller memory: peak resident %.1f MiB before the edit (first rollout), %.1f MiB during the measured one; "+
		"peak heap in use %.1f and %.1f MiB; live heap after the rollout %.1f MiB\n",
		row, mib(r.peakBefore), mib(r.controller.PeakRSSKiB), mib(r.peakHeapBefore), mib(r.controller.PeakHeapKiB), mib(r.controller.HeapKiB))
	wall := r.cpuWall.Seconds()
	c := r.cpu
	all := c.controller + c.apiserver + c.etcd + c.agents
	fmt.Fprintf(w, "bench: row %d: CPU from the edit to the rollout seen complete (%.1fs, load average %s then %s): kube-apiserver %s, etcd %s, "+
		"fake agents and benchmark %s, controller %s; %.0f%% of the 2 CPUs, %.2f ms of API server and etcd per write\n",
		row, wall, r.load[0], r.load[1], c.apiserver.Round(10*time.Millisecond), c.etcd.Round(10*time.Millisecond),
		c.agents.Round(10*time.Millisecond), c.controller.Round(10*time.Millisecond), 100*all.Seconds()/(2*wall),
		float64((c.apiserver+c.etcd).Microseconds())/1000/float64(r.agentWrites+r.controller.total()))
	f := r.alone
	fmt.Fprintf(w, "bench: row %d: the writes alone, the same pods told by the benchmark with the controller stopped: %d writes in %.1fs, "+
		"kube-apiserver %s, etcd %s, %.2f ms per write; the rollout took %.2f times as long\n",
		row, f.writes, f.wall.Seconds(), f.cpu.apiserver.Round(10*time.Millisecond), f.cpu.etcd.Round(10*time.Millisecond),
		float64(f.apiPerWrite().Microseconds())/1000, r.overAlone())
}

// loadAverage is the machine's load average over the last minute, as
// /proc/loadavg says it ("?" if it cannot be read).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// apiServerProfileSeconds is how long the API server's CPU profile runs
// from the edit.
const apiServerProfileSeconds = 10

// profileAPIServer writes a CPU profile of the API server, over its first
// seconds from now, to path (nothing if path is empty); the function it
// returns waits until it is written.
func profileAPIServer(cfg *rest.Config, path string) (wait func()) {
	if path == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fetchProfile(cfg, path); err != nil {
			fmt.Fprintf(os.Stderr, "bench: no API server profile: %v\n", err)
		}
	}()
	return func() { <-done }
}

func fetchProfile(cfg *rest.Config, path string) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	hc.Timeout = 2 * apiServerProfileSeconds * time.Second
	resp, err := hc.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(cfg.Host, "/"), apiServerProfileSeconds))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
