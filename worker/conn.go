package worker

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// tracker knows every connection a Server accepted, and closes the idle
// ones during a drain.
type tracker struct {
	grace time.Duration

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool
	changed  chan struct{} // closed and replaced when a connection ends
}

func newTracker(grace time.Duration) *tracker {
	return &tracker{grace: grace, conns: map[*conn]struct{}{}, changed: make(chan struct{})}
}

// listener wraps an inherited socket so that the tracker sees every
// connection it accepts.
type listener struct {
	net.Listener
	t *tracker
}

func (l listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &conn{Conn: nc, t: l.t, idle: true, idleSince: time.Now()}
	l.t.mu.Lock()
	defer l.t.mu.Unlock()
	l.t.conns[c] = struct{}{}
	if l.t.draining {
		c.startDrain(l.t.grace)
	}
	return c, nil
}

// connState follows http.Server.ConnState for the tracker.
func (t *tracker) connState(nc net.Conn, st http.ConnState) {
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		nc = u.NetConn()
	}
	c, ok := nc.(*conn)
	if !ok {
		return
	}
	c.setState(st)
	if st == http.StateClosed || st == http.StateHijacked {
		t.mu.Lock()
		defer t.mu.Unlock()
		delete(t.conns, c)
		close(t.changed)
		t.changed = make(chan struct{})
	}
}

// drain starts closing the connections that wait for a request; a
// connection accepted later is drained from the start.
func (t *tracker) drain() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.draining = true
	for c := range t.conns {
		c.startDrain(t.grace)
	}
}

// open returns how many connections are open, and a channel closed at the
// next change.
func (t *tracker) open() (int, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns), t.changed
}

// conn is an accepted connection that closes itself, during a drain, at a
// moment when no request is on it.
//
// The server's goroutine reads the next request of a kept-alive connection
// through Read. During a drain, while the connection is idle (net/http
// says StateNew or StateIdle and no byte of a request has been read since),
// its read deadline is brought forward to idleSince+grace. When that
// deadline fires in Read with nothing read, and the kernel holds no byte
// for it either (a MSG_PEEK), Read returns io.EOF and the server closes the
// connection as if the client had gone. Anything else (a request that
// began, a byte waiting) leaves the connection to be served: its response
// carries "Connection: close" and the server closes it after.
//
// This is what http.Server.Shutdown cannot do: it closes idle connections
// from outside, and so also one whose request it has begun to read.
type conn struct {
	net.Conn
	t *tracker

	mu            sync.Mutex
	idle          bool      // StateNew or StateIdle: waiting for a request
	idleSince     time.Time // when it began to wait
	readSinceIdle bool      // a byte of the next request was read
	spared        bool      // bytes were waiting at the deadline: not idle after all
	draining      bool
	grace         time.Duration
	deadline      time.Time // the read deadline the server asked for
}

func (c *conn) setState(st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateIdle:
		c.idle, c.idleSince, c.readSinceIdle, c.spared = true, time.Now(), false, false
	case http.StateNew:
	default:
		c.idle = false
	}
	c.apply()
}

func (c *conn) startDrain(grace time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining, c.grace = true, grace
	c.apply()
}

// closeAt returns when a draining idle connection is to be closed.
func (c *conn) closeAt() (time.Time, bool) {
	if !c.draining || !c.idle || c.readSinceIdle || c.spared {
		return time.Time{}, false
	}
	return c.idleSince.Add(c.grace), true
}

// apply sets the socket's read deadline: the server's, or the drain's if
// earlier. c.mu is held.
func (c *conn) apply() {
	d := c.deadline
	if at, ok := c.closeAt(); ok && (d.IsZero() || at.Before(d)) {
		d = at
	}
	_ = c.Conn.SetReadDeadline(d) // fails only on a closed connection, which Read reports
}

// Read reads from the connection; during a drain it returns io.EOF instead
// of waiting on an idle connection past its grace.
func (c *conn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		if n > 0 {
			if !c.readSinceIdle {
				c.readSinceIdle = true
				c.apply()
			}
			c.mu.Unlock()
			return n, err
		}
		ours := errors.Is(err, os.ErrDeadlineExceeded) && (c.deadline.IsZero() || time.Now().Before(c.deadline))
		if !ours {
			c.mu.Unlock()
			return n, err
		}
		if at, ok := c.closeAt(); ok && !time.Now().Before(at) {
			if !c.waiting() {
				c.mu.Unlock()
				return 0, io.EOF
			}
			c.spared = true
		}
		c.apply()
		c.mu.Unlock()
	}
}

// waiting reports whether the kernel holds bytes (or the end) that the
// server has not read yet.
func (c *conn) waiting() bool {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	n := 0
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}); err != nil {
		return false
	}
	return rerr == nil && n > 0
}

// SetReadDeadline records the server's deadline; a drain may bring it
// forward.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	c.apply()
	return nil
}

// SetDeadline sets both deadlines, as net.Conn's does.
func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// CloseWrite half-closes the connection when the socket can (TCP, unix):
// net/http uses it to close a connection gracefully.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// ReadFrom keeps net/http's sendfile(2) path for files served through the
// connection.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
