package metrics_test

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/softreload/softreload/agent/metrics"
	"github.com/softreload/softreload/agent/supervisor"
)

func TestMetrics(t *testing.T) {
	st := supervisor.Status{Workers: []supervisor.WorkerStatus{
		{Group: "web", Revision: "r2", State: supervisor.WorkerReady},
		{Group: "web", Revision: "r2", State: supervisor.WorkerReady},
		{Group: "web", Revision: "r3", State: supervisor.WorkerStarting, Next: true},
		{Group: "gw", Revision: "r1", State: supervisor.WorkerBackoff},
	}}
	m := metrics.New(func() supervisor.Status { return st })
	m.ReloadFinished(supervisor.ReloadSucceeded, 2*time.Second)
	m.ReloadFinished(supervisor.ReloadFailed, time.Second)
	m.WorkerRestarted("gw")
	m.WorkerRestarted("gw")
	m.WorkerStopped("web", 200*time.Millisecond, false)
	m.WorkerStopped("web", 300*time.Millisecond, false)
	m.WorkerStopped("gw", 5*time.Second, true)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`softreload_agent_reloads_total{result="succeeded"} 1`,
		`softreload_agent_reloads_total{result="failed"} 1`,
		`softreload_agent_reloads_total{result="aborted"} 0`,
		`softreload_agent_reload_duration_seconds_sum 3`,
		`softreload_agent_worker_restarts_total{group="gw"} 2`,
		`softreload_agent_worker_drain_seconds_count{group="web"} 2`,
		`softreload_agent_worker_drain_seconds_sum{group="web"} 0.5`,
		`softreload_agent_worker_drain_seconds_bucket{group="web",le="0.25"} 1`,
		`softreload_agent_worker_drain_seconds_bucket{group="gw",le="2.5"} 0`,
		`softreload_agent_worker_drain_seconds_bucket{group="gw",le="5"} 1`,
		`softreload_agent_worker_stop_kills_total{group="web"} 0`,
		`softreload_agent_worker_stop_kills_total{group="gw"} 1`,
		`softreload_agent_workers{group="web",revision="r2",state="Ready"} 2`,
		`softreload_agent_workers{group="web",revision="r3",state="Starting"} 1`,
		`softreload_agent_workers{group="gw",revision="r1",state="Backoff"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// What a Prometheus server scrapes: the text format, each family with
	// its type, the Go runtime's and the process's metrics beside the
	// agent's.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("the metrics are not in the Prometheus text format: %v\n%s", err, body)
	}
	for name, typ := range map[string]dto.MetricType{
		"softreload_agent_reloads_total":           dto.MetricType_COUNTER,
		"softreload_agent_reload_duration_seconds": dto.MetricType_HISTOGRAM,
		"softreload_agent_worker_restarts_total":   dto.MetricType_COUNTER,
		"softreload_agent_worker_drain_seconds":    dto.MetricType_HISTOGRAM,
		"softreload_agent_worker_stop_kills_total": dto.MetricType_COUNTER,
		"softreload_agent_workers":                 dto.MetricType_GAUGE,
		"go_goroutines":                            dto.MetricType_GAUGE,
		"process_resident_memory_bytes":            dto.MetricType_GAUGE,
		"process_cpu_seconds_total":                dto.MetricType_COUNTER,
	} {
		f, ok := families[name]
		switch {
		case !ok:
			t.Errorf("the metrics lack the family %s", name)
		case f.GetType() != typ:
			t.Errorf("%s is a %s, want a %s", name, f.GetType(), typ)
		}
	}
}
