package main

import "testing"

// The agent returns its free heap once after each burst of work that the
// runtime collected, when it has gone quiet, and not again while it stays
// idle.
func TestTheAgentReturnsItsMemoryOnceIdle(t *testing.T) {
	const mib = 1 << 20
	tr := newTrimmer(usage{allocated: 10 * mib})
	steps := []struct {
		usage
		want bool
	}{
		{usage{10 * mib, 0}, false},            // idle since the start: nothing to return
		{usage{13 * mib, 0}, false},            // working
		{usage{13*mib + 1000, 0}, false},       // quiet, but nothing collected yet: little is free
		{usage{15 * mib, 1}, false},            // working, and collected
		{usage{15*mib + 1000, 1}, true},        // quiet after 5 MiB of work: return it
		{usage{15*mib + 2000, 2}, false},       // idle: nothing more to return
		{usage{15*mib + 200<<10, 2}, false},    // a metrics scrape: not quiet, too little work
		{usage{15*mib + 210<<10, 2}, false},    // quiet, but too little work since
		{usage{17 * mib, 3}, false},            // a reload
		{usage{17*mib + quietBelow, 3}, false}, // not quiet yet
		{usage{17*mib + quietBelow, 3}, true},  // quiet
	}
	for i, s := range steps {
		got := tr.idle(s.usage)
		if got != s.want {
			t.Fatalf("step %d (%+v): idle = %v, want %v", i, s.usage, got, s.want)
		}
		if got {
			tr.trimmed(s.usage)
		}
	}
}

// The agent runs on at most two Ps, unless GOMAXPROCS says otherwise, and
// never raises what the runtime chose from a lower CPU limit.
func TestTheAgentCapsGOMAXPROCS(t *testing.T) {
	for _, c := range []struct {
		current int
		set     bool
		want    int
	}{
		{64, false, 2}, // a big node without a CPU limit
		{2, false, 2},
		{1, false, 1},  // a CPU limit of one: kept
		{64, true, 64}, // GOMAXPROCS=64 in the environment
		{1, true, 1},
	} {
		if got := procs(c.current, c.set); got != c.want {
			t.Errorf("procs(%d, set by the environment: %v) = %d, want %d", c.current, c.set, got, c.want)
		}
	}
}
