package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	runtimemetrics "runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/softreload/softreload/controllers"
	"github.com/softreload/softreload/internal/procstat"
	"github.com/softreload/softreload/internal/testing/envtest"
)

// stats are the controller process's counters.
type stats struct {
	// Writes counts the API requests that change something, by
	// "METHOD resource".
	Writes map[string]int64 `json:"writes"`
	// WritesPerSecond counts the same requests by the Unix second they
	// were sent in.
	WritesPerSecond map[int64]int64 `json:"writesPerSecond"`
	Reconciles      int64           `json:"reconciles"`
	// PeakRSSKiB is the peak resident memory (VmHWM) since the start or
	// the last "reset".
	PeakRSSKiB int64 `json:"peakRSSKiB"`
	// PeakHeapKiB is the most heap in use (live objects and garbage not
	// yet collected) sampled since the start or the last "reset".
	PeakHeapKiB int64 `json:"peakHeapKiB"`
	// HeapKiB is the live heap after a garbage collection.
	HeapKiB int64 `json:"heapKiB"`
}

func (s stats) total() int64 {
	var n int64
	for _, v := range s.Writes {
		n += v
	}
	return n
}

func (s stats) keys() []string {
	var out []string
	for k := range s.Writes {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (s stats) minus(o stats) stats {
	d := stats{Writes: map[string]int64{}, WritesPerSecond: s.WritesPerSecond,
		Reconciles: s.Reconciles - o.Reconciles, PeakRSSKiB: s.PeakRSSKiB, PeakHeapKiB: s.PeakHeapKiB, HeapKiB: s.HeapKiB}
	for k, v := range s.Writes {
		if v-o.Writes[k] != 0 {
			d.Writes[k] = v - o.Writes[k]
		}
	}
	return d
}

// writeCounter counts the requests that change something.
type writeCounter struct {
	next      http.RoundTripper
	mu        sync.Mutex
	n         map[string]int64
	perSecond map[int64]int64
}

func (w *writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		w.mu.Lock()
		w.n[req.Method+" "+resourceOf(req.URL.Path)]++
		w.perSecond[time.Now().Unix()]++
		w.mu.Unlock()
	}
	return w.next.RoundTrip(req)
}

// resourceOf turns /api/v1/namespaces/ns/pods/name into pods, and
// .../workerpools/name/status into workerpools/status.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p == "namespaces" && i+2 < len(parts) {
			rest := parts[i+2:]
			if len(rest) >= 3 {
				return rest[0] + "/" + rest[2]
			}
			return rest[0]
		}
	}
	// Cluster-scoped: /api/v1/<resource>... or /apis/<group>/<version>/<resource>...
	if len(parts) >= 3 && parts[0] == "api" {
		return parts[2]
	}
	if len(parts) >= 4 && parts[0] == "apis" {
		return parts[3]
	}
	return path
}

// runController runs the WorkerPool and agent-access reconcilers with the
// manager's cache options, as the manager does (without the webhook),
// and answers "stats" on stdin with its counters on stdout; "reset" starts
// the peaks of memory afresh (and answers the counters too).
func runController(kubeconfig string) error {
	logger := logr.Discard()
	if os.Getenv("SOFTRELOAD_BENCH_LOG") != "" {
		logger = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{})
	}
	ctrl.SetLogger(logger)
	cfg, err := loadKubeconfig(kubeconfig)
	if err != nil {
		return err
	}
	counter := &writeCounter{n: map[string]int64{}, perSecond: map[int64]int64{}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 envtest.NewScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(),
	})
	if err != nil {
		return err
	}
	r := controllers.NewWorkerPoolReconciler(mgr.GetClient(), mgr.GetEventRecorder("softreload"), clock.RealClock{})
	if err := r.SetupWithManager(mgr); err != nil {
		return err
	}
	// Pods are told a revision once their agents may read it, which the
	// agent-access controller grants: run it as the manager does.
	if err := controllers.NewAgentAccessReconciler(mgr.GetClient()).SetupWithManager(mgr); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heap := &heapPeak{}
	go heap.sample(ctx)
	go func() {
		in := bufio.NewScanner(os.Stdin)
		profile := newProfile(os.Getenv("SOFTRELOAD_BENCH_CPUPROFILE"))
		for in.Scan() {
			peakHeap, peakRSS := heap.peak(), peakRSS() // before the collection below
			if in.Text() == "reset" {
				resetPeakRSS()
				heap.reset()
			}
			profile.toggle()
			runtime.GC()
			var mem runtime.MemStats
			runtime.ReadMemStats(&mem)
			counter.mu.Lock()
			s := stats{Writes: maps.Clone(counter.n), WritesPerSecond: maps.Clone(counter.perSecond),
				Reconciles: reconciles(), PeakRSSKiB: peakRSS, PeakHeapKiB: peakHeap / 1024, HeapKiB: int64(mem.HeapAlloc / 1024)}
			counter.mu.Unlock()
			b, _ := json.Marshal(s)
			fmt.Println(string(b))
		}
		cancel() // stdin closed: the benchmark is over
	}()
	return mgr.Start(ctx)
}

// profile writes a CPU profile of the measured rollout, from the first
// stats request to the second, to a file (SOFTRELOAD_BENCH_CPUPROFILE), and
// then the allocations since the start (SOFTRELOAD_BENCH_HEAPPROFILE).
type profile struct {
	path string
	f    *os.File
	done bool
}

func newProfile(path string) *profile { return &profile{path: path} }

func (p *profile) toggle() {
	switch {
	case p.path == "" || p.done:
	case p.f == nil:
		f, err := os.Create(p.path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			p.f = f
			return
		}
		fmt.Fprintf(os.Stderr, "bench: no CPU profile: %v\n", err)
		p.done = true
	default:
		pprof.StopCPUProfile()
		_ = p.f.Close()
		p.done = true
		writeHeapProfile(os.Getenv("SOFTRELOAD_BENCH_HEAPPROFILE"))
	}
}

// writeHeapProfile writes the allocations since the start to path, if set.
func writeHeapProfile(path string) {
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		_ = f.Close()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: no heap profile: %v\n", err)
	}
}

// reconciles reads controller-runtime's reconcile counter of the
// workerpool controller.
func reconciles() int64 {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return -1
	}
	var n float64
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "controller") == "workerpool" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int64(n)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// heapPeak samples the heap in use (runtime/metrics, which stops nothing)
// every few milliseconds and keeps the most seen.
type heapPeak struct {
	mu  sync.Mutex
	max int64
}

// heapSampleEvery is how often heapPeak samples: a peak shorter than that
// may be missed. The sampling is the benchmark's, but its CPU is the
// controller process's: every 5 ms it cost 30 ms of CPU a second, more
// than the idle controller (3 ms) and a sixth of row 1's controller CPU;
// every 25 ms, about 10 ms a second.
const heapSampleEvery = 25 * time.Millisecond

func (h *heapPeak) sample(ctx context.Context) {
	samples := []runtimemetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	t := time.NewTicker(heapSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		runtimemetrics.Read(samples)
		if samples[0].Value.Kind() != runtimemetrics.KindUint64 {
			return
		}
		v := int64(samples[0].Value.Uint64())
		h.mu.Lock()
		h.max = max(h.max, v)
		h.mu.Unlock()
	}
}

func (h *heapPeak) peak() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}

func (h *heapPeak) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.max = 0
}

// resetPeakRSS starts the process's peak resident memory (VmHWM) afresh
// from what it holds now (Linux: clear_refs 5).
func resetPeakRSS() {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		fmt.Fprintf(os.Stderr, "bench: cannot reset the peak resident memory: %v\n", err)
	}
}

// peakRSS is the process's peak resident memory, VmHWM, in KiB.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kib int64
			_, _ = fmt.Sscanf(strings.TrimSpace(rest), "%d", &kib)
			return kib
		}
	}
	return -1
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

// The controller process, seen from the benchmark.

// controller is the child process that runs the reconcilers.
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
func (c *controller) stats() (stats, error) { return c.ask("stats") }

// resetPeaks asks the controller process for its counters, and to count
// its peaks of memory afresh from now.
func (c *controller) resetPeaks() (stats, error) { return c.ask("reset") }

func (c *controller) ask(what string) (stats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s stats
	if _, err := fmt.Fprintln(c.in, what); err != nil {
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
	t, err := processCPU(c.cmd.Process.Pid)
	if err != nil {
		return 0, fmt.Errorf("reading the controller's CPU time: %w", err)
	}
	return t, nil
}

// processCPU returns the CPU time (user and system) process pid used.
func processCPU(pid int) (time.Duration, error) {
	st, err := procstat.Read(pid)
	if err != nil {
		return 0, err
	}
	return st.CPU(), nil
}

// children returns the pids of this process's children by their command
// name: the control plane's kube-apiserver and etcd.
func children() (map[string]int, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	out := map[string]int{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if st, err := procstat.Read(pid); err == nil && st.PPid == self {
			out[st.Comm] = pid
		}
	}
	return out, nil
}

// cpuTimes are the CPU times of the processes that share the machine
// during a run: the controller, the API server, etcd and this process (the
// fake agents and the benchmark's own watch).
type cpuTimes struct {
	controller, apiserver, etcd, agents time.Duration
}

func (c cpuTimes) minus(o cpuTimes) cpuTimes {
	return cpuTimes{c.controller - o.controller, c.apiserver - o.apiserver, c.etcd - o.etcd, c.agents - o.agents}
}

// readCPU reads the CPU times of the controller (none if ctl is nil), the
// control plane's processes (pids from children) and this process.
func readCPU(ctl *controller, plane map[string]int) (cpuTimes, error) {
	var t cpuTimes
	var err error
	if ctl != nil {
		if t.controller, err = ctl.cpu(); err != nil {
			return t, err
		}
	}
	for name, into := range map[string]*time.Duration{"kube-apiserver": &t.apiserver, "etcd": &t.etcd} {
		pid, ok := plane[name]
		if !ok {
			return t, fmt.Errorf("no %s among this process's children", name)
		}
		if *into, err = processCPU(pid); err != nil {
			return t, fmt.Errorf("reading the CPU time of %s: %w", name, err)
		}
	}
	if t.agents, err = processCPU(os.Getpid()); err != nil {
		return t, fmt.Errorf("reading this process's CPU time: %w", err)
	}
	return t, nil
}

func (c *controller) kill() {
	_ = c.in.Close()
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}
