package load_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/softreload/softreload/internal/load"
)

// TestCountsAnswersAndFailures runs the generator against a real server on
// loopback that answers two bodies and fails every third request, and a
// target where nothing listens.
func TestCountsAnswersAndFailures(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i := n.Add(1)
		if i%3 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "v%d\n", i%3)
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // nothing listens there any more: every request is refused

	g := load.Start([]string{srv.URL, closed.URL}, load.Options{Pause: time.Millisecond})
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := g.Snapshot()
		if s[srv.URL].OK >= 20 && s[srv.URL].Failed >= 5 && s[closed.URL].Failed >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not enough requests went out in 30s: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stats := g.Stop()

	live := stats[srv.URL]
	if live.Answers["v1"] == 0 || live.Answers["v2"] == 0 || len(live.Answers) != 2 {
		t.Errorf("answers %v, want both bodies counted and nothing else", live.Answers)
	}
	if live.OK != live.Answers["v1"]+live.Answers["v2"] {
		t.Errorf("OK %d is not the sum of the answers %v", live.OK, live.Answers)
	}
	if got := n.Load(); got < live.OK+live.Failed {
		t.Errorf("counted %d requests, the server saw only %d", live.OK+live.Failed, got)
	}
	if stats[closed.URL].OK != 0 || len(stats[closed.URL].Errors) == 0 {
		t.Errorf("the closed target: %+v, want failures only, with their errors", stats[closed.URL])
	}
	ok, failed, _ := load.Total(stats)
	if ok != live.OK || failed != live.Failed+stats[closed.URL].Failed {
		t.Errorf("Total: ok %d failed %d, want %d and %d", ok, failed, live.OK, live.Failed+stats[closed.URL].Failed)
	}
}
