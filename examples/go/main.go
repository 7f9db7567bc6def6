// Command go-worker is a softreload worker in Go: it serves HTTP on the
// sockets the agent passes (LISTEN_FDS, from fd 3), says READY=1 on
// NOTIFY_SOCKET once it serves, and on SIGTERM finishes the requests in
// flight before it exits.
//
// Run alone (no LISTEN_FDS), it listens on $ADDR itself (127.0.0.1:8080),
// with SO_REUSEPORT when REUSEPORT=1: that is how the benchmark compares
// the agent with a worker on its own socket.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	listeners, err := listen()
	if err != nil {
		log.Fatal(err)
	}
	rev, id := os.Getenv("SOFTRELOAD_REVISION"), os.Getenv("SOFTRELOAD_WORKER_ID")
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ms, err := strconv.Atoi(r.URL.Query().Get("sleep")); err == nil {
				time.Sleep(time.Duration(ms) * time.Millisecond)
			}
			fmt.Fprintf(w, "hello from revision %s, worker %s, pid %d\n", rev, id, os.Getpid())
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// Count the connections, to answer every one accepted before the stop.
	var mu sync.Mutex
	open := 0
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open++
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	var serving sync.WaitGroup
	for _, l := range listeners {
		serving.Add(1)
		go func() {
			defer serving.Done()
			_ = srv.Serve(l) // returns when l is closed
		}()
	}
	notify("READY=1")

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	notify("STOPPING=1")

	// Graceful stop. Stop accepting: the agent's socket keeps queueing new
	// connections for the other workers. Then answer every connection
	// already accepted, and exit. (http.Server.Shutdown alone would close,
	// unanswered, a connection whose request it reads after the shutdown
	// began.)
	for _, l := range listeners {
		l.Close()
	}
	serving.Wait()
	srv.SetKeepAlivesEnabled(false)
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := open
		mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	log.Print("stopping with connections still open")
}

// listen returns the sockets passed by the agent (sd_listen_fds), or its
// own socket when run alone.
func listen() ([]net.Listener, error) {
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if n > 0 && os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) {
		var ls []net.Listener
		for fd := 3; fd < 3+n; fd++ {
			f := os.NewFile(uintptr(fd), "listen")
			l, err := net.FileListener(f)
			if err != nil {
				return nil, fmt.Errorf("fd %d: %w", fd, err)
			}
			f.Close()
			ls = append(ls, l)
		}
		return ls, nil
	}
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	lc := net.ListenConfig{}
	if os.Getenv("REUSEPORT") == "1" {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return []net.Listener{l}, nil
}

// notify sends state to the agent (sd_notify). Without NOTIFY_SOCKET it does
// nothing.
func notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	c, err := net.Dial("unixgram", path)
	if err != nil {
		log.Printf("notify: %v", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		log.Printf("notify: %v", err)
	}
}
