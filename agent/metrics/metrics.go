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
	drains   *prometheus.HistogramVec
	kills    *prometheus.CounterVec
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
		drains: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "softreload_agent_worker_drain_seconds",
			Help: "How long stopped workers took from their stop signal to their exit, by group.",
			// From a worker that exits at once to the longest stop timeout.
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600},
		}, []string{"group"}),
		kills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "softreload_agent_worker_stop_kills_total",
			Help: "Stopped workers killed because their stop timeout ran out, by group.",
		}, []string{"group"}),
	}
	for _, r := range []supervisor.ReloadResult{supervisor.ReloadSucceeded, supervisor.ReloadFailed, supervisor.ReloadAborted} {
		m.reloads.WithLabelValues(string(r))
	}
	m.registry.MustRegister(m.reloads, m.duration, m.restarts, m.drains, m.kills, workersCollector(status),
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

// WorkerStopped observes how long a stopped worker took to exit and counts
// it if it was killed. A group's kill counter exists from its first stop, so
// that a rate over it reads 0 rather than nothing.
func (m *Metrics) WorkerStopped(group string, drain time.Duration, killed bool) {
	m.drains.WithLabelValues(group).Observe(drain.Seconds())
	kills := m.kills.WithLabelValues(group)
	if killed {
		kills.Inc()
	}
}

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
