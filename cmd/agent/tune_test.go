package main

import "testing"

// The agent returns its free heap once after each burst of work, when it
// has gone quiet, and not again while it stays idle.
func TestTheAgentReturnsItsMemoryOnceIdle(t *testing.T) {
	const mib = 1 << 20
	tr := newTrimmer(10 * mib)
	steps := []struct {
		allocated uint64 // bytes allocated so far, read once a period
		want      bool
	}{
		{10 * mib, false},            // idle since the start: nothing to return
		{13 * mib, false},            // working
		{15 * mib, false},            // still working
		{15*mib + 1000, true},        // quiet after 5 MiB of work: return it
		{15*mib + 2000, false},       // idle: nothing more to return
		{15*mib + 200<<10, false},    // a metrics scrape: not quiet, too little work
		{15*mib + 210<<10, false},    // quiet, but too little work since
		{17 * mib, false},            // a reload
		{17*mib + quietBelow, false}, // not quiet yet
		{17*mib + quietBelow, true},  // quiet
	}
	for i, s := range steps {
		got := tr.idle(s.allocated)
		if got != s.want {
			t.Fatalf("step %d (%d bytes allocated): idle = %v, want %v", i, s.allocated, got, s.want)
		}
		if got {
			tr.trimmed(s.allocated)
		}
	}
}
