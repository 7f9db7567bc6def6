package worker_test

import (
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

func TestWorker(t *testing.T) {
	if child := os.Getenv(childEnv); child != "" {
		runChild(child) // a worker process started by a spec; never returns
	}
	RegisterFailHandler(Fail)
	// Waits are for things that happen; a busy machine only makes them slow.
	SetDefaultEventuallyTimeout(time.Minute)
	RunSpecs(t, "worker")
}
