package main

import (
	"os"
	"runtime"
)

// maxProcs caps GOMAXPROCS. The agent is a supervisor that idles for the
// life of its pod, and never has more than two goroutines worth running at
// once. By default Go runs one P per CPU of the container's limit or, with
// none (as many pods run), of the node, each with its own caches and GC
// worker: measured, 5.9 MiB of heap and stacks at GOMAXPROCS=64 against
// 3.0 MiB at 2. docs/agent.md ("Footprint") gives the measurements behind
// this setting and behind those the agent leaves alone.
const maxProcs = 2

// tuneRuntime sets the Go runtime for the agent.
func tuneRuntime() {
	_, set := os.LookupEnv("GOMAXPROCS")
	if n := runtime.GOMAXPROCS(0); procs(n, set) != n {
		runtime.GOMAXPROCS(procs(n, set))
	}
}

// procs is the GOMAXPROCS the agent runs with, given the runtime's and
// whether the environment set it: the environment wins.
func procs(current int, setByEnv bool) int {
	if setByEnv || current <= maxProcs {
		return current
	}
	return maxProcs
}
