package main

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("the agent's runtime settings", func() {
	// The agent returns its free heap once after each burst of work that
	// the runtime collected, when it has gone quiet, and not again while it
	// stays idle.
	It("returns its memory once idle after some work", func() {
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
			Expect(got).To(Equal(s.want), "step %d (%+v)", i, s.usage)
			if got {
				tr.trimmed(s.usage)
			}
		}
	})

	// The agent runs on at most two Ps, unless GOMAXPROCS says otherwise,
	// and never raises what the runtime chose from a lower CPU limit.
	DescribeTable("caps GOMAXPROCS",
		func(current int, setByEnv bool, want int) {
			Expect(procs(current, setByEnv)).To(Equal(want))
		},
		Entry("on a big node without a CPU limit", 64, false, 2),
		Entry("on two CPUs", 2, false, 2),
		Entry("keeping a CPU limit of one", 1, false, 1),
		Entry("unless GOMAXPROCS=64 is in the environment", 64, true, 64),
		Entry("with GOMAXPROCS=1 in the environment", 1, true, 1),
	)
})
