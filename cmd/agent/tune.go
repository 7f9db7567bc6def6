package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The Go runtime's defaults suit a server that is busy; the agent is a
// small supervisor that runs for the life of its pod and is idle almost
// all of it. docs/agent.md ("Footprint") gives the measurements behind
// these settings.
const (
	// maxProcs caps GOMAXPROCS. By default it is the container's CPU limit
	// or, with none (as many pods run), every CPU of the node: each P adds
	// its own caches and GC worker, 3 MiB on a 64-CPU node, for a process
	// that never has more than two goroutines worth running at once.
	maxProcs = 2
	// trimEvery is how often the agent looks whether it went idle after
	// some work; trimAfter is how much it must have allocated since it
	// last returned memory, and quietBelow how little in the last period,
	// for it to return its free heap to the operating system at once.
	trimEvery  = time.Second
	trimAfter  = 1 << 20
	quietBelow = 64 << 10
)

// tuneRuntime sets the Go runtime for the agent.
func tuneRuntime() {
	_, set := os.LookupEnv("GOMAXPROCS")
	if n := runtime.GOMAXPROCS(0); procs(n, set) != n {
		runtime.GOMAXPROCS(procs(n, set))
	}
	go trimWhenIdle(time.NewTicker(trimEvery).C)
}

// procs is the GOMAXPROCS the agent runs with, given the runtime's and
// whether the environment set it: the environment wins.
func procs(current int, setByEnv bool) int {
	if setByEnv || current <= maxProcs {
		return current
	}
	return maxProcs
}

// trimWhenIdle returns the heap's free memory to the operating system once
// the agent goes quiet after some work (its start, a reload): a collection
// of its few MiB of heap, then nothing until it works again. The runtime
// would keep that memory up to its next GC goal, and give it back only
// over minutes, while the agent may stay idle for days.
func trimWhenIdle(tick <-chan time.Time) {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	read := func() usage {
		metrics.Read(samples)
		return usage{allocated: samples[0].Value.Uint64(), collections: samples[1].Value.Uint64()}
	}
	t := newTrimmer(read())
	for range tick {
		if t.idle(read()) {
			debug.FreeOSMemory()
			t.trimmed(read())
		}
	}
}

// usage is what the agent's heap went through so far.
type usage struct {
	// allocated is the bytes allocated over the agent's life.
	allocated uint64
	// collections is the number of garbage collections.
	collections uint64
}

// trimmer decides when the agent went idle after some work.
type trimmer struct {
	atTrim usage
	last   uint64 // bytes allocated at the last period
}

func newTrimmer(u usage) *trimmer { return &trimmer{atTrim: u, last: u.allocated} }

// idle takes the heap's usage once a period, and says whether the agent
// worked since its memory was last returned, the runtime collected since
// (until it has, the heap is what the work built, with little free to give
// back, and a forced collection would cost more than it returns), and the
// agent was quiet over the last period.
func (t *trimmer) idle(u usage) bool {
	worked := u.allocated-t.atTrim.allocated >= trimAfter && u.collections > t.atTrim.collections
	quiet := u.allocated-t.last < quietBelow
	t.last = u.allocated
	return worked && quiet
}

// trimmed records that the memory was returned.
func (t *trimmer) trimmed(u usage) { t.atTrim, t.last = u, u.allocated }
