// Package testworker is a worker for the agent's tests (only tests use it), run by re-executing
// the test binary: it serves HTTP on the sockets it inherits and behaves as
// the files of its code directory say (a broken revision, a slow start).
package testworker

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Env set to 1 makes the test binary run as the test worker. It is set in
// a group's env, where the SOFTRELOAD_ prefix is reserved for the agent.
const Env = "TESTWORKER_SOFTRELOAD"

// RunIfAsked runs the worker and exits if the process was started as one.
func RunIfAsked() {
	if os.Getenv(Env) != "1" {
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "testworker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Files in the code directory that steer the worker:
//
//	mode     "exit" (exit 3 at start), "hang" (never ready), "crash" (exit 1
//	         after READY=1), otherwise serve
//	version  the body of every answer
//
// TESTWORKER_STARTS names a file the worker appends its start time to.
// A request with ?sleep=MS answers after MS milliseconds (with &log=1, it
// prints "handling a slow request" first).
func run() error {
	dir := os.Getenv("SOFTRELOAD_CODE_DIR")
	mode := read(filepath.Join(dir, "mode"))
	version := read(filepath.Join(dir, "version"))
	fmt.Printf("starting revision %s mode %q\n", os.Getenv("SOFTRELOAD_REVISION"), mode)
	if path := os.Getenv("TESTWORKER_STARTS"); path != "" {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, time.Now().UnixNano())
		f.Close()
	}
	switch mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "fatal: cannot load code: syntax error on line 3")
		os.Exit(3)
	case "hang":
		select {}
	}
	n, _ := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if n > 0 && os.Getenv("LISTEN_PID") != strconv.Itoa(os.Getpid()) {
		return fmt.Errorf("LISTEN_PID=%s is not my pid %d", os.Getenv("LISTEN_PID"), os.Getpid())
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGINT)

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if ms, err := strconv.Atoi(r.URL.Query().Get("sleep")); err == nil {
			if r.URL.Query().Get("log") != "" {
				fmt.Println("handling a slow request")
			}
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
		fmt.Fprintf(w, "rev=%s version=%s pid=%d worker=%s\n", os.Getenv("SOFTRELOAD_REVISION"), version, os.Getpid(), os.Getenv("SOFTRELOAD_WORKER_ID"))
	})
	srv := &http.Server{Handler: mux}
	d := newDrainer(srv)
	for i := 0; i < n; i++ {
		f := os.NewFile(uintptr(3+i), "listen")
		l, err := net.FileListener(f)
		if err != nil {
			return fmt.Errorf("fd %d: %w", 3+i, err)
		}
		f.Close()
		d.serve(l)
	}
	if err := notify("READY=1"); err != nil {
		return err
	}
	if mode == "crash" {
		fmt.Fprintln(os.Stderr, "crashing on purpose")
		os.Exit(1)
	}
	<-sigs
	return d.drain(time.Minute)
}

// drainer stops an http.Server without dropping a connection it accepted:
// Shutdown alone closes a connection whose request it reads after the
// shutdown began, without an answer.
type drainer struct {
	srv     *http.Server
	mu      sync.Mutex
	conns   int
	ls      []net.Listener
	serving sync.WaitGroup
}

func newDrainer(srv *http.Server) *drainer {
	d := &drainer{srv: srv}
	srv.ConnState = func(_ net.Conn, s http.ConnState) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch s {
		case http.StateNew:
			d.conns++
		case http.StateClosed, http.StateHijacked:
			d.conns--
		}
	}
	return d
}

func (d *drainer) serve(l net.Listener) {
	d.ls = append(d.ls, l)
	d.serving.Add(1)
	go func() {
		defer d.serving.Done()
		_ = d.srv.Serve(l)
	}()
}

// drain stops accepting (the agent's socket keeps queueing for the other
// workers), answers every connection accepted so far, then returns.
func (d *drainer) drain(timeout time.Duration) error {
	for _, l := range d.ls {
		l.Close()
	}
	d.serving.Wait() // every accepted connection is counted now
	d.srv.SetKeepAlivesEnabled(false)
	deadline := time.Now().Add(timeout)
	for {
		d.mu.Lock()
		n := d.conns
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("connections still open at the stop deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

func read(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

// Output collects what workers or an agent write, for a test to read while
// they still write.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
