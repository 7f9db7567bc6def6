package load_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

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
	eventually(t, "enough requests to both targets", func() bool {
		s := g.Snapshot()
		return s[srv.URL].OK >= 20 && s[srv.URL].Failed >= 5 && s[closed.URL].Failed >= 5
	}, func() any { return g.Snapshot() })
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

// TestPauseHoldsOneTarget pauses one of two targets: once Pause returns, no
// request reaches it (the server counts them) and none fails, while the
// other target is still served; after Resume it is served again.
func TestPauseHoldsOneTarget(t *testing.T) {
	var paused, other atomic.Int64
	count := func(n *atomic.Int64) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n.Add(1)
			fmt.Fprintln(w, "ok")
		}))
	}
	a, b := count(&paused), count(&other)
	defer a.Close()
	defer b.Close()
	g := load.Start([]string{a.URL, b.URL}, load.Options{Pause: time.Millisecond})
	defer g.Stop()
	counts := func() any { return fmt.Sprintf("paused target %d, other %d", paused.Load(), other.Load()) }
	eventually(t, "requests to both targets", func() bool { return paused.Load() > 5 && other.Load() > 5 }, counts)

	g.Pause(a.URL)
	before, otherBefore := paused.Load(), other.Load()
	eventually(t, "more requests to the other target", func() bool { return other.Load() > otherBefore+20 }, counts)
	if got := paused.Load(); got != before {
		t.Errorf("the paused target got %d requests after Pause returned", got-before)
	}
	if s := g.Snapshot()[a.URL]; s.OK != before || s.Failed != 0 {
		t.Errorf("the paused target: %d answered, %d failed; want %d answered (every request it got), none failed", s.OK, s.Failed, before)
	}

	g.Resume(a.URL)
	eventually(t, "requests to the resumed target", func() bool { return paused.Load() > before+5 }, counts)
}

// TestKeepAliveKeepsOneConnectionPerWorker runs the keep-alive mode against
// a server that counts connections and twice closes one, at its third
// request, without an answer, as a worker that breaks the contract does:
// each worker keeps its connection, and each request the server dropped
// counts as Retried.
func TestKeepAliveKeepsOneConnectionPerWorker(t *testing.T) {
	var mu sync.Mutex
	requests := map[string]int{} // by client address: one per connection
	drops := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests[r.RemoteAddr]++
		drop := requests[r.RemoteAddr] == 3 && drops < 2
		if drop {
			drops++
		}
		mu.Unlock()
		if drop {
			c, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				c.Close()
			}
			return
		}
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()

	var observed sync.Map // client -> true
	g := load.Start([]string{srv.URL}, load.Options{Workers: 2, Pause: time.Millisecond, KeepAlive: true,
		Observe: func(a load.Answer) { observed.Store(a.Client, a.Retried) }})
	eventually(t, "40 answered requests", func() bool { return g.Snapshot()[srv.URL].OK >= 40 }, func() any { return g.Snapshot() })
	s := g.Stop()[srv.URL]
	mu.Lock()
	defer mu.Unlock()
	// 2 connections, and one more after each drop, whatever the count of
	// requests.
	if len(requests) != 4 {
		t.Errorf("the server saw %d connections, want 4 (2 workers, 2 reconnections): %v", len(requests), requests)
	}
	if s.Failed != 0 || s.Retried != 2 {
		t.Errorf("failed %d, retried %d; want 0 and 2 (the drops): %v", s.Failed, s.Retried, s.Errors)
	}
	for _, c := range []int{0, 1} {
		if _, ok := observed.Load(c); !ok {
			t.Errorf("Observe never saw client %d", c)
		}
	}
}

// eventually waits, for up to 30s, until cond holds, and fails the test
// naming what it waited for and what state says otherwise.
func eventually(t *testing.T, what string, cond func() bool, state func() any) {
	t.Helper()
	NewWithT(t).Eventually(cond).WithTimeout(30*time.Second).WithPolling(5*time.Millisecond).Should(BeTrue(),
		func() string { return fmt.Sprintf("waiting for %s: %+v", what, state()) })
}
