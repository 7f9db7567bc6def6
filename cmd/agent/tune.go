package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"syscall"
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
	// trimEvery is how often the agent looks whether it went quiet after
	// some work: it is quiet when it allocated under quietBelow and took
	// under quietFaults page faults in the last period. Then it returns
	// its free heap to the operating system if it allocated trimAfter
	// since it last did, and releases its binary's pages if it took
	// releaseAfter page faults since it last did (a start-up takes about
	// 1,000; ten reloads, 110; the release, about 30 as the next period
	// maps back what an idle agent runs).
	trimEvery    = time.Second
	trimAfter    = 1 << 20
	quietBelow   = 64 << 10
	quietFaults  = 16
	releaseAfter = 64
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

// trimWhenIdle gives memory back once the agent goes quiet after some
// work (its start, a reload). It takes its binary's pages out of its
// resident set (releaseBinaryPages): start-up runs the initialisation of
// every linked package, code an idle agent never runs again, and a reload
// code it does not run until the next. After work that the runtime
// collected, it also returns the heap's free memory to the operating
// system at once: a collection of its few MiB of heap, then nothing until
// it works again. The runtime would keep that memory up to its next GC
// goal, and give it back only over minutes, while the agent may stay idle
// for days.
func trimWhenIdle(tick <-chan time.Time) {
	samples := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	read := func() usage {
		metrics.Read(samples)
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return usage{allocated: samples[0].Value.Uint64(), collections: samples[1].Value.Uint64(), faults: uint64(ru.Minflt + ru.Majflt)}
	}
	t := &trimmer{}
	for range tick {
		heap, binary := t.idle(read())
		if heap {
			debug.FreeOSMemory()
		}
		if binary {
			// Best effort: without /proc, or with a kernel older than
			// MADV_COLD (5.4), there is less or nothing to release.
			_ = releaseBinaryPages()
		}
		t.gaveBack(read(), heap, binary)
	}
}

// usage is what the agent went through so far.
type usage struct {
	// allocated is the bytes allocated over the agent's life.
	allocated uint64
	// collections is the number of garbage collections.
	collections uint64
	// faults is the number of page faults: each maps pages of the binary
	// when the agent runs code it did not run lately, or heap or stack.
	faults uint64
}

// trimmer decides when the agent went quiet after some work, and what to
// give back then. Its zero value starts at the agent's start: start-up is
// work.
type trimmer struct {
	atTrim    usage  // at the last return of the heap
	atRelease uint64 // page faults at the last release of the binary's pages
	last      usage  // at the last period
}

// idle takes the agent's usage once a period and says what to give back,
// if anything, now that the agent was quiet over the period: it allocated
// under quietBelow and took under quietFaults page faults. The heap, when
// the agent allocated trimAfter since its memory was last returned and the
// runtime collected since (until it has, the heap is what the work built,
// with little free to give back, and a forced collection would cost more
// than it returns). Its binary's pages, when it took releaseAfter page
// faults since they were last released: a reload allocates little, but
// runs code.
func (t *trimmer) idle(u usage) (heap, binary bool) {
	quiet := u.allocated-t.last.allocated < quietBelow && u.faults-t.last.faults < quietFaults
	t.last = u
	heap = quiet && u.allocated-t.atTrim.allocated >= trimAfter && u.collections > t.atTrim.collections
	binary = quiet && u.faults-t.atRelease >= releaseAfter
	return heap, binary
}

// gaveBack records what was given back: the heap if heap, the binary's
// pages if binary; u is the usage after that.
func (t *trimmer) gaveBack(u usage, heap, binary bool) {
	// What giving back cost (a collection, the pages the next period faults
	// back) is not work.
	t.last = u
	if heap {
		t.atTrim = u
	}
	if binary {
		t.atRelease = u.faults
	}
}
