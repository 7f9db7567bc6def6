package main

import "testing"

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
