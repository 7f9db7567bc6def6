package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/softreload/softreload/controllers"
	"github.com/softreload/softreload/internal/testing/envtest"
)

// stats are the controller process's counters.
type stats struct {
	// Writes counts the API requests that change something, by
	// "METHOD resource".
	Writes     map[string]int64 `json:"writes"`
	Reconciles int64            `json:"reconciles"`
	PeakRSSKiB int64            `json:"peakRSSKiB"`
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
	d := stats{Writes: map[string]int64{}, Reconciles: s.Reconciles - o.Reconciles, PeakRSSKiB: s.PeakRSSKiB}
	for k, v := range s.Writes {
		if v-o.Writes[k] != 0 {
			d.Writes[k] = v - o.Writes[k]
		}
	}
	return d
}

// writeCounter counts the requests that change something.
type writeCounter struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int64
}

func (w *writeCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		w.mu.Lock()
		w.n[req.Method+" "+resourceOf(req.URL.Path)]++
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
	return path
}

// runController runs the WorkerPool reconciler alone, as the manager would,
// and answers "stats" on stdin with its counters on stdout.
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
	counter := &writeCounter{n: map[string]int64{}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 envtest.NewScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
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
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			counter.mu.Lock()
			s := stats{Writes: map[string]int64{}, Reconciles: reconciles(), PeakRSSKiB: peakRSS()}
			for k, v := range counter.n {
				s.Writes[k] = v
			}
			counter.mu.Unlock()
			b, _ := json.Marshal(s)
			fmt.Println(string(b))
		}
		cancel() // stdin closed: the benchmark is over
	}()
	return mgr.Start(ctx)
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
