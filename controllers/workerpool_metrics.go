package controllers

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/rollout"
)

// The controller's metrics, served on the manager's metrics endpoint.
var (
	rolloutsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "softreload_rollouts_total",
		Help: "Rollouts that ended, by result: Complete, Failed, RolledBack or Superseded.",
	}, []string{"result"})

	rolloutDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "softreload_rollout_duration_seconds",
		Help:    "Time from a revision's first sighting to the end of its rollout, by result.",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 14), // 0.5s to about 2h
	}, []string{"result"})

	podsByState = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "softreload_pods",
		Help: "Pods of a WorkerPool by state: total, updated, ready, reloading, failed.",
	}, []string{"namespace", "pool", "state"})
)

func init() {
	metrics.Registry.MustRegister(rolloutsTotal, rolloutDuration, podsByState)
}

func observeRollout(result string, started, ended time.Time) {
	rolloutsTotal.WithLabelValues(result).Inc()
	if !started.IsZero() && ended.After(started) {
		rolloutDuration.WithLabelValues(result).Observe(ended.Sub(started).Seconds())
	}
}

func setPodMetrics(pool *workersv1alpha1.WorkerPool, c rollout.Counts) {
	for state, n := range map[string]int32{
		"total": c.Pods, "updated": c.Updated, "ready": c.Ready, "reloading": c.InFlight, "failed": c.Failed,
	} {
		podsByState.WithLabelValues(pool.Namespace, pool.Name, state).Set(float64(n))
	}
}

func forgetPoolMetrics(namespace, name string) {
	podsByState.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "pool": name})
}
