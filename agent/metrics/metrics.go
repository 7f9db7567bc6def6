package metrics

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"github.com/softreload/softreload/agent/supervisor"
)

// The agent's metric families.
const (
	reloadsName  = "softreload_agent_reloads_total"
	durationName = "softreload_agent_reload_duration_seconds"
	restartsName = "softreload_agent_worker_restarts_total"
	drainsName   = "softreload_agent_worker_drain_seconds"
	killsName    = "softreload_agent_worker_stop_kills_total"
	workersName  = "softreload_agent_workers"
)

var (
	// reloadBuckets are 0.1 s doubling up to 204.8 s.
	reloadBuckets = exponentialBuckets(0.1, 2, 12)
	// drainBuckets go from a worker that exits at once to the longest
	// stop timeout.
	drainBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600}
)

// Metrics holds the agent's metrics in their own set.
//
// They are kept with VictoriaMetrics' metrics library rather than the
// Prometheus client: the agent runs in every governed pod, and the
// Prometheus client's package initialisation (a default registry with its
// collectors, protobuf's registrations of the exposition types) costs every
// agent 1.2-1.5 MiB of resident memory and 2.1 MB of binary, whether it
// serves metrics or not (docs/agent.md, "Footprint").
type Metrics struct {
	set      *vm.Set
	duration *vm.PrometheusHistogram
}

var _ supervisor.Recorder = (*Metrics)(nil)

// New registers the metrics; status is read at each scrape for the workers
// gauge.
func New(status func() supervisor.Status) *Metrics {
	// # HELP and # TYPE lines, so that a scraper knows the histograms
	// (the library's switch is global; the agent has one set).
	vm.ExposeMetadata(true)
	m := &Metrics{set: vm.NewSet()}
	m.duration = m.set.NewPrometheusHistogramExt(durationName, reloadBuckets)
	for _, r := range []supervisor.ReloadResult{supervisor.ReloadSucceeded, supervisor.ReloadFailed, supervisor.ReloadAborted} {
		m.set.GetOrCreateCounter(series(reloadsName, "result", string(r)))
	}
	m.set.RegisterMetricsWriter(func(w io.Writer) { writeWorkers(w, status()) })
	return m
}

// ReloadFinished counts a reload and its duration.
func (m *Metrics) ReloadFinished(r supervisor.ReloadResult, d time.Duration) {
	m.set.GetOrCreateCounter(series(reloadsName, "result", string(r))).Inc()
	m.duration.Update(d.Seconds())
}

// WorkerRestarted counts a restart.
func (m *Metrics) WorkerRestarted(group string) {
	m.set.GetOrCreateCounter(series(restartsName, "group", group)).Inc()
}

// WorkerStopped observes how long a stopped worker took to exit and counts
// it if it was killed. A group's kill counter exists from its first stop, so
// that a rate over it reads 0 rather than nothing.
func (m *Metrics) WorkerStopped(group string, drain time.Duration, killed bool) {
	m.set.GetOrCreatePrometheusHistogramExt(series(drainsName, "group", group), drainBuckets).Update(drain.Seconds())
	kills := m.set.GetOrCreateCounter(series(killsName, "group", group))
	if killed {
		kills.Inc()
	}
}

// Handler serves the metrics in the Prometheus text format, with the Go
// runtime's and the process's.
func (m *Metrics) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.set.WritePrometheus(w)
		vm.WriteGoMetrics(w)
		vm.WriteProcMetrics(w)
	})
}

// writeWorkers writes the workers gauge: workers by group, state and
// revision.
func writeWorkers(w io.Writer, st supervisor.Status) {
	type key struct{ group, state, revision string }
	counts := map[key]int{}
	for _, wk := range st.Workers {
		counts[key{wk.Group, string(wk.State), wk.Revision}]++
	}
	keys := make([]key, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return strings.Compare(a.group+"\x00"+a.state+"\x00"+a.revision, b.group+"\x00"+b.state+"\x00"+b.revision)
	})
	vm.WriteMetadataIfNeeded(w, workersName, "gauge")
	for _, k := range keys {
		fmt.Fprintf(w, "%s{group=%s,revision=%s,state=%s} %d\n", workersName, quote(k.group), quote(k.revision), quote(k.state), counts[k])
	}
}

// series names one series of a family with one label.
func series(family, label, value string) string {
	return family + "{" + label + "=" + quote(value) + "}"
}

// quote is a label value in the text format: quoted, with backslash,
// double quote and newline escaped.
func quote(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v) + `"`
}

// exponentialBuckets is count upper bounds from start, each factor times
// the one before.
func exponentialBuckets(start, factor float64, count int) []float64 {
	b := make([]float64, count)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}
