// Command go-worker is a softreload worker in Go, written with package
// worker: it serves HTTP on the sockets the agent passes, says READY=1 once
// it serves, and on SIGTERM drains (requests in flight answered with
// Connection: close, kept-alive connections closed when no request is on
// them) before it exits.
//
// Run alone (no LISTEN_FDS), it listens on $ADDR itself (127.0.0.1:8080),
// with SO_REUSEPORT when REUSEPORT=1: that is how the benchmark compares
// the agent with a worker on its own socket.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/softreload/softreload/worker"
)

func main() {
	self, err := worker.Self()
	if err != nil {
		log.Fatal(err)
	}
	s := &worker.Server{HTTP: &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ms, err := strconv.Atoi(r.URL.Query().Get("sleep")); err == nil {
				time.Sleep(time.Duration(ms) * time.Millisecond)
			}
			fmt.Fprintf(w, "hello from revision %s, worker %d, pid %d\n", self.Revision, self.ID, os.Getpid())
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}}
	inherited, err := worker.Listeners()
	switch {
	case errors.Is(err, worker.ErrNoListeners):
		l, err := listenAlone()
		if err != nil {
			log.Fatal(err)
		}
		s.Listeners = []net.Listener{l}
	case err != nil:
		log.Fatal(err)
	}
	for _, l := range inherited {
		s.Listeners = append(s.Listeners, l.Listener)
	}
	if err := s.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// listenAlone opens the worker's own socket, when no agent passed one.
func listenAlone() (net.Listener, error) {
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
	return lc.Listen(context.Background(), "tcp", addr)
}
