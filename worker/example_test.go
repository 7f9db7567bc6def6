package worker_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/softreload/softreload/worker"
)

// The whole contract for an HTTP worker: serve on the agent's sockets, say
// READY=1, drain on the stop signal.
func ExampleServeHTTP() {
	me, err := worker.Self()
	if err != nil {
		log.Fatal(err)
	}
	err = worker.ServeHTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "hello from revision %s, worker %d\n", me.Revision, me.ID)
	}))
	if err != nil {
		log.Fatal(err)
	}
}

// A server of your own on one named socket, ready once warm, with a bound
// on the drain.
func ExampleServer() {
	l, err := worker.Listener("web-0")
	if err != nil {
		log.Fatal(err)
	}
	s := &worker.Server{
		HTTP:         &http.Server{Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second},
		Listeners:    []net.Listener{l},
		IdleGrace:    time.Second,
		DrainTimeout: 25 * time.Second, // under the group's stopTimeoutSeconds
		NoReady:      true,
	}
	go func() {
		warmCaches()
		if err := worker.Ready(); err != nil {
			log.Print(err)
		}
	}()
	if err := s.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func warmCaches() {}
