// Package load is the load generator of the end-to-end tests and the demo:
// it sends HTTP requests to a set of targets without pause, each on a new
// connection (so every request goes through the accept queue a reload must
// keep open) or, with KeepAlive, each client on a connection it keeps (as
// ingress controllers and client pools do), and counts every answer and
// every failure.
package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options tune a Generator. Zero values mean the defaults.
type Options struct {
	// Workers is how many requests are in flight per target at once (2).
	Workers int
	// Pause is the wait between two requests of one worker (10ms).
	Pause time.Duration
	// Timeout bounds one request (10s): a request that takes longer fails.
	Timeout time.Duration
	// KeepAlive gives each worker a connection of its own that it keeps
	// from one request to the next (HTTP/1.1 keep-alive); it opens a new
	// one only when the server closed it (after "Connection: close"). Off,
	// every request opens a new connection.
	KeepAlive bool
	// Observe, when set, is called after every request with what happened
	// to it, from the worker's goroutine.
	Observe func(Answer)
}

// Answer is one request as Observe sees it.
type Answer struct {
	Target string
	// Client is the worker that sent it, 0..Workers-1 per target.
	Client       int
	Began, Ended time.Time
	// Body is the answer (trimmed) when Err is nil.
	Body string
	Err  error
	// Retried: see Stats.Retried.
	Retried bool
}

// Stats counts what one target answered.
type Stats struct {
	OK, Failed int64
	// Retried counts the successful requests that Go's HTTP client sent a
	// second time, on a new connection, because the server closed their
	// kept-alive connection without an answer. Go retries such a request
	// when it is idempotent; a client that does not (Python's http.client,
	// a POST) fails it. A worker that drains as the contract asks never
	// causes one.
	Retried int64
	// Answers counts the bodies of successful answers (trimmed).
	Answers map[string]int64
	// Errors are the first failures (and retries), for the report.
	Errors []string
	// Last is the body of the newest successful answer.
	Last string
}

// Generator sends requests until Stop.
type Generator struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	cond  *sync.Cond // on mu: a pause or a request ended, or Stop
	stats map[string]*Stats
	// paused targets get no new request; inFlight counts the requests
	// under way, by target.
	paused   map[string]bool
	inFlight map[string]int
}

const maxErrors = 20

// Start sends requests to every target (URLs on loopback) until Stop.
func Start(targets []string, opts Options) *Generator {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Pause <= 0 {
		opts.Pause = 10 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	shared := &http.Client{
		Timeout:   opts.Timeout,
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Generator{cancel: cancel, stats: map[string]*Stats{}, paused: map[string]bool{}, inFlight: map[string]int{}}
	g.cond = sync.NewCond(&g.mu)
	for _, target := range targets {
		g.stats[target] = &Stats{Answers: map[string]int64{}}
	}
	// Every target's Stats exist before the first worker runs: the workers
	// read g.stats under mu, and this loop must not write it beside them.
	for _, target := range targets {
		for i := range opts.Workers {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				client := shared
				if opts.KeepAlive {
					client = keepAliveClient(opts.Timeout)
					defer client.CloseIdleConnections()
				}
				for g.begin(ctx, target) {
					a := Answer{Target: target, Client: i, Began: time.Now()}
					a.Body, a.Retried, a.Err = get(ctx, client, target)
					a.Ended = time.Now()
					if ctx.Err() != nil {
						g.end(target)
						return // stopping: this request does not count
					}
					g.record(target, a)
					if opts.Observe != nil {
						opts.Observe(a)
					}
					select {
					case <-ctx.Done():
					case <-time.After(opts.Pause):
					}
				}
			}()
		}
	}
	return g
}

// keepAliveClient is one worker's client in KeepAlive mode: one connection,
// kept.
func keepAliveClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{Proxy: nil, MaxIdleConns: 1, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1},
	}
}

// get sends one request; retried says the client had to send it again on
// a new connection.
func get(ctx context.Context, client *http.Client, url string) (body string, retried bool, err error) {
	conns := 0
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conns++ }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
	if err != nil {
		return "", false, err
	}
	resp, err := client.Do(req)
	retried = conns > 1
	if err != nil {
		return "", retried, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", retried, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", retried, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), retried, nil
}

// begin waits while target is paused and counts a request in flight; it
// returns false once the generator stops.
func (g *Generator) begin(ctx context.Context, target string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused[target] && ctx.Err() == nil {
		g.cond.Wait()
	}
	if ctx.Err() != nil {
		return false
	}
	g.inFlight[target]++
	return true
}

// end counts a request of target done.
func (g *Generator) end(target string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight[target]--
	g.cond.Broadcast()
}

// Pause stops sending requests to target and returns once none is under
// way: what happens to the target until Resume is not counted, as a pod
// that a Service no longer routes to.
func (g *Generator) Pause(target string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused[target] = true
	for g.inFlight[target] > 0 {
		g.cond.Wait()
	}
}

// Resume sends requests to a paused target again.
func (g *Generator) Resume(target string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.paused, target)
	g.cond.Broadcast()
}

// record counts the answer of one request of target and ends it.
func (g *Generator) record(target string, a Answer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.cond.Broadcast()
	g.inFlight[target]--
	s := g.stats[target]
	if a.Err != nil {
		s.Failed++
		if len(s.Errors) < maxErrors {
			s.Errors = append(s.Errors, fmt.Sprintf("%s %s: %v", a.Ended.Format("15:04:05.000"), target, a.Err))
		}
		return
	}
	s.OK++
	if a.Retried {
		s.Retried++
		if len(s.Errors) < maxErrors {
			s.Errors = append(s.Errors, fmt.Sprintf("%s %s: sent again on a new connection: the server closed its kept-alive connection without an answer", a.Ended.Format("15:04:05.000"), target))
		}
	}
	s.Answers[a.Body]++
	s.Last = a.Body
}

// Snapshot returns the counts so far, by target.
func (g *Generator) Snapshot() map[string]Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]Stats, len(g.stats))
	for t, s := range g.stats {
		c := *s
		c.Answers = make(map[string]int64, len(s.Answers))
		for k, v := range s.Answers {
			c.Answers[k] = v
		}
		c.Errors = slices.Clone(s.Errors)
		out[t] = c
	}
	return out
}

// Stop ends the load and returns the final counts by target.
func (g *Generator) Stop() map[string]Stats {
	g.cancel()
	g.mu.Lock()
	g.cond.Broadcast() // wake the workers of paused targets
	g.mu.Unlock()
	g.wg.Wait()
	return g.Snapshot()
}

// Total adds the counts of every target.
func Total(stats map[string]Stats) (ok, failed int64, errors []string) {
	for _, s := range stats {
		ok += s.OK
		failed += s.Failed
		errors = append(errors, s.Errors...)
	}
	slices.Sort(errors)
	return ok, failed, errors
}
