package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/softreload/softreload/agent/supervisor"
)

// Metrics holds the agent's metrics in their own registry.
type Metrics struct {
	registry *prometheus.Registry
	reloads  *prometheus.CounterVec
	duration prometheus.Histogram
	restarts *prometheus.CounterVec
}

var _ supervisor.Recorder = (*Metrics)(nil)

var workersDesc = prometheus.NewDesc("softreload_agent_workers",
	"Worker processes by group, state and revision.", []string{"group", "state", "revision"}, nil)

// New registers the metrics; status is read at each scrape for the workers
// gauge.
func New(status func() supervisor.Status) *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "softreload_agent_reloads_total",
			Help: "Reloads by result: succeeded, failed (rolled back) or aborted (the agent stopped).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "softreload_agent_reload_duration_seconds",
			Help:    "How long reloads took, rollback included.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 12),
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "softreload_agent_worker_restarts_total",
			Help: "Workers restarted after they exited unexpectedly, by group.",
		}, []string{"group"}),
	}
	for _, r := range []supervisor.ReloadResult{supervisor.ReloadSucceeded, supervisor.ReloadFailed, supervisor.ReloadAborted} {
		m.reloads.WithLabelValues(string(r))
	}
	m.registry.MustRegister(m.reloads, m.duration, m.restarts, workersCollector(status),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ReloadFinished counts a reload and its duration.
func (m *Metrics) ReloadFinished(r supervisor.ReloadResult, d time.Duration) {
	m.reloads.WithLabelValues(string(r)).Inc()
	m.duration.Observe(d.Seconds())
}

// WorkerRestarted counts a restart.
func (m *Metrics) WorkerRestarted(group string) { m.restarts.WithLabelValues(group).Inc() }

// Handler serves the metrics in the Prometheus format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

type workersCollector func() supervisor.Status

func (c workersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- workersDesc }

func (c workersCollector) Collect(ch chan<- prometheus.Metric) {
	type key struct{ group, state, revision string }
	counts := map[key]int{}
	for _, w := range c().Workers {
		counts[key{w.Group, string(w.State), w.Revision}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(n), k.group, k.state, k.revision)
	}
}
