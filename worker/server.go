package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultIdleGrace is how long a drain lets an idle kept-alive connection
// wait for its next request by default.
const DefaultIdleGrace = 500 * time.Millisecond

// Server runs an http.Server on the worker's sockets and drains it on the
// stop signal. The zero value of every field but HTTP means the default.
type Server struct {
	// HTTP is the server to run. Run sets its ConnState and wraps its
	// Handler; a ConnState it already has is still called.
	HTTP *http.Server
	// Listeners are the sockets to serve; nil means every inherited socket
	// (Listeners).
	Listeners []net.Listener
	// IdleGrace is how long, during a drain, a kept-alive connection that
	// waits for a request may go on waiting (counted from the end of its
	// last response): a client that sends one in time gets its answer with
	// "Connection: close", as it would from a server that closes after
	// each request. Then the connection is closed, at a moment when no
	// request is on it. DefaultIdleGrace when zero.
	IdleGrace time.Duration
	// DrainTimeout bounds the drain; when it passes, the connections still
	// open are closed. Zero means no bound: the agent's stop timeout is the
	// bound (it kills the worker, and reports it).
	DrainTimeout time.Duration
	// Signals start the drain; nil means SIGTERM, SIGINT and SIGQUIT.
	Signals []os.Signal
	// NoReady leaves READY=1 to the caller, for a worker that is not ready
	// when it begins to serve (Ready tells the agent later).
	NoReady bool
}

// ServeHTTP serves handler on the inherited sockets, says READY=1, and
// returns once it drained after the stop signal: the whole worker contract
// for an HTTP worker.
func ServeHTTP(handler http.Handler) error {
	s := &Server{HTTP: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}}
	return s.Run(context.Background())
}

// Run serves until ctx ends or a stop signal arrives, then drains: it
// stops accepting (the agent's copy of each socket keeps queueing for the
// other workers), answers every request in flight with "Connection: close",
// closes each connection once no request is on it, and returns when none is
// left. It returns an error if it could not serve, or if DrainTimeout
// passed with connections open.
func (s *Server) Run(ctx context.Context) error {
	if s.HTTP == nil {
		return errors.New("worker.Server: HTTP is nil")
	}
	listeners := s.Listeners
	if listeners == nil {
		inherited, err := Listeners()
		if err != nil {
			return err
		}
		for _, l := range inherited {
			listeners = append(listeners, l.Listener)
		}
	}
	grace := s.IdleGrace
	if grace <= 0 {
		grace = DefaultIdleGrace
	}
	// The stop signal is ours before the agent hears READY=1: it may stop
	// the worker right after.
	stop := make(chan os.Signal, 1)
	sigs := s.Signals
	if sigs == nil {
		sigs = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT}
	}
	signal.Notify(stop, sigs...)
	defer signal.Stop(stop)

	t := newTracker(grace)
	var closing atomic.Bool
	s.wire(t, &closing)

	serveErr := make(chan error, len(listeners))
	var serving sync.WaitGroup
	for _, l := range listeners {
		serving.Add(1)
		go func() {
			defer serving.Done()
			serveErr <- s.HTTP.Serve(listener{Listener: l, t: t})
		}()
	}
	if !s.NoReady {
		if err := Ready(); err != nil {
			closeAll(listeners)
			return err
		}
	}

	var err error
	select {
	case <-ctx.Done():
	case <-stop:
	case err = <-serveErr: // a listener failed before any stop
		err = fmt.Errorf("serving: %w", err)
	}
	// From here every response whose header is not written yet says
	// Connection: close; then no more accepts; then the idle connections go.
	closing.Store(true)
	_ = Notify("STOPPING=1")
	closeAll(listeners)
	serving.Wait()
	t.drain()
	if derr := s.waitDrained(t); derr != nil && err == nil {
		err = derr
	}
	return err
}

// wire puts the tracker and the Connection: close rule into the server.
func (s *Server) wire(t *tracker, closing *atomic.Bool) {
	h := s.HTTP.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	s.HTTP.Handler = closeWhenDraining{h: h, closing: closing}
	user := s.HTTP.ConnState
	s.HTTP.ConnState = func(c net.Conn, st http.ConnState) {
		t.connState(c, st)
		if user != nil {
			user(c, st)
		}
	}
}

// waitDrained waits until every connection closed, or DrainTimeout.
func (s *Server) waitDrained(t *tracker) error {
	var timeout <-chan time.Time
	if s.DrainTimeout > 0 {
		timer := time.NewTimer(s.DrainTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	for {
		n, changed := t.open()
		if n == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-timeout:
			_ = s.HTTP.Close()
			return fmt.Errorf("%d connection(s) still open after the drain timeout (%s)", n, s.DrainTimeout)
		}
	}
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		_ = l.Close() // the worker's copy only: the agent's keeps the queue
	}
}

// closeWhenDraining adds "Connection: close" to every response whose header
// is written once the drain began.
type closeWhenDraining struct {
	h       http.Handler
	closing *atomic.Bool
}

func (c closeWhenDraining) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if c.closing.Load() {
		w.Header().Set("Connection", "close")
		c.h.ServeHTTP(w, r)
		return
	}
	c.h.ServeHTTP(&closingWriter{ResponseWriter: w, closing: c.closing}, r)
}

// closingWriter checks the drain at the last moment the header can change:
// WriteHeader, or the first Write.
type closingWriter struct {
	http.ResponseWriter
	closing *atomic.Bool
	decided bool
}

func (w *closingWriter) decide(code int) {
	if w.decided || code < 200 {
		return
	}
	w.decided = true
	if w.closing.Load() {
		w.Header().Set("Connection", "close")
	}
}

// WriteHeader is http.ResponseWriter's.
func (w *closingWriter) WriteHeader(code int) {
	w.decide(code)
	w.ResponseWriter.WriteHeader(code)
}

// Write is http.ResponseWriter's.
func (w *closingWriter) Write(p []byte) (int, error) {
	w.decide(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

// Flush is http.Flusher's.
func (w *closingWriter) Flush() {
	w.decide(http.StatusOK)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack is http.Hijacker's (websockets): a hijacked connection leaves the
// drain's hands.
func (w *closingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *closingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
