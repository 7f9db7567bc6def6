// Package load is the load generator of the end-to-end tests and the demo:
// it sends HTTP requests to a set of targets without pause, each on a new
// connection (so every request goes through the accept queue a reload must
// keep open), and counts every answer and every failure.
package load

import (
	"context"
	"fmt"
	"io"
	"net/http"
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
}

// Stats counts what one target answered.
type Stats struct {
	OK, Failed int64
	// Answers counts the bodies of successful answers (trimmed).
	Answers map[string]int64
	// Errors are the first failures, for the report.
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
	client := &http.Client{
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
		for range opts.Workers {
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				for g.begin(ctx, target) {
					body, err := get(ctx, client, target)
					if ctx.Err() != nil {
						g.end(target)
						return // stopping: this request does not count
					}
					g.record(target, body, err)
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

func get(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
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
func (g *Generator) record(target, body string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer g.cond.Broadcast()
	g.inFlight[target]--
	s := g.stats[target]
	if err != nil {
		s.Failed++
		if len(s.Errors) < maxErrors {
			s.Errors = append(s.Errors, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), target, err))
		}
		return
	}
	s.OK++
	s.Answers[body]++
	s.Last = body
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
