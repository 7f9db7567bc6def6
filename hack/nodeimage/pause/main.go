// Command pause is the real-node test's sandbox (pause) image: the first
// process of every pod, which holds the pod's namespaces. It sleeps until
// SIGTERM or SIGINT and, as PID 1, reaps every child that exits. It is
// built into an image by hack/image (make test-node); no registry is
// reachable on the test's node.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			return
		}
		reap()
	}
}

// reap waits for every child that has exited, without blocking.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
