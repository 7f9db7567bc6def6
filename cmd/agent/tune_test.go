package main

import (
	"os"
	"regexp"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("the agent's runtime settings", func() {
	// The agent returns its free heap once after each burst of work that
	// the runtime collected, when it has gone quiet, and not again while it
	// stays idle; it releases its binary's pages once it is quiet after
	// its start-up, and after later work that ran code (page faults), even
	// work that allocated little.
	It("gives memory back once idle after some work", func() {
		const mib = 1 << 20
		tr := &trimmer{}
		steps := []struct {
			usage
			heap, binary bool
		}{
			{usage{900 << 10, 0, 1000}, false, false},                         // starting: not quiet
			{usage{920 << 10, 0, 1010}, false, true},                          // quiet after start-up: its pages, but no collection yet
			{usage{930 << 10, 0, 1040}, false, false},                         // the release's pages mapped back: not work
			{usage{940 << 10, 0, 1045}, false, false},                         // idle
			{usage{3 * mib, 0, 1300}, false, false},                           // working
			{usage{3*mib + 1000, 0, 1305}, false, true},                       // quiet, but nothing collected yet: little heap is free
			{usage{5 * mib, 1, 1500}, false, false},                           // working, and collected
			{usage{5*mib + 1000, 1, 1510}, true, true},                        // quiet after 2 MiB of work: both
			{usage{5*mib + 2000, 2, 1511}, false, false},                      // idle: nothing more to give back
			{usage{5*mib + 200<<10, 2, 1530}, false, false},                   // a metrics scrape: not quiet
			{usage{5*mib + 210<<10, 2, 1532}, false, false},                   // quiet, but too little work since
			{usage{5*mib + 250<<10, 2, 1620}, false, false},                   // reloads: they allocate little, but fault
			{usage{5*mib + 260<<10, 2, 1625}, false, true},                    // quiet: the pages that ran
			{usage{5*mib + 270<<10, 2, 1700}, false, false},                   // a reload
			{usage{5*mib + 270<<10 + 1, 2, 1700 + quietFaults}, false, false}, // still faulting
			{usage{5*mib + 270<<10 + 2, 2, 1700 + quietFaults}, false, true},  // quiet
		}
		for i, s := range steps {
			heap, binary := tr.idle(s.usage)
			Expect([]bool{heap, binary}).To(Equal([]bool{s.heap, s.binary}), "step %d (%+v): heap, binary", i, s.usage)
			tr.gaveBack(s.usage, heap, binary)
		}
	})

	// /proc/self/maps: the binary's code and read-only data, not its data
	// nor anything else mapped.
	It("finds its binary's read-only mappings", func() {
		maps := []byte(`00400000-00b75000 r-xp 00000000 fe:00 9986501                            /softreload/bin/agent
00b75000-012e8000 r--p 00775000 fe:00 9986501                            /softreload/bin/agent
012e8000-01367000 rw-p 00ee8000 fe:00 9986501                            /softreload/bin/agent
01367000-033ae000 rw-p 00000000 00:00 0
7fb7cb800000-7fb7cc000000 r--p 00000000 fe:00 1234                         /softreload/bin/agent.old
7ffd6a5e4000-7ffd6a605000 rw-p 00000000 00:00 0                          [stack]
7ffd6a7b8000-7ffd6a7ba000 r-xp 00000000 00:00 0                          [vdso]
`)
		got, err := readOnlyMappings(maps, "/softreload/bin/agent")
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal([]mapping{{0x400000, 0xb75000}, {0xb75000, 0x12e8000}}))
		_, err = readOnlyMappings([]byte("zz-00b75000 r-xp 00000000 fe:00 1 /softreload/bin/agent\n"), "/softreload/bin/agent")
		Expect(err).To(MatchError(ContainSubstring("a line of /proc/self/maps")))
	})

	// The release takes the binary's pages out of the process's resident
	// set; they come back as the code runs.
	It("releases its binary's pages", func() {
		before := residentFile("self")
		Expect(releaseBinaryPages()).To(Succeed())
		after := residentFile("self")
		Expect(after).To(BeNumerically("<", before/2), "resident pages of files (RssFile), in KiB, before and after")
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

// residentFile returns a process's resident pages of files (RssFile of
// /proc/PID/status; pid "self" for this one), in KiB.
func residentFile(pid string) int {
	GinkgoHelper()
	status, err := os.ReadFile("/proc/" + pid + "/status")
	Expect(err).NotTo(HaveOccurred())
	m := regexp.MustCompile(`RssFile:\s+(\d+) kB`).FindSubmatch(status)
	Expect(m).NotTo(BeNil(), "RssFile in /proc/%s/status", pid)
	kib, err := strconv.Atoi(string(m[1]))
	Expect(err).NotTo(HaveOccurred())
	return kib
}
