package v1alpha1_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	v1 "github.com/softreload/softreload/api/v1alpha1"
)

// reports the agent writes: each must be read back as it was.
var validReports = map[string]v1.AgentStatus{
	"ready":                      {Revision: "3f2a9c0d1e4b5a6c", State: v1.AgentReady, Running: "3f2a9c0d1e4b5a6c", Ready: 4, Total: 4},
	"reloading":                  {Revision: "r2", State: v1.AgentReloading, Running: "r1", Ready: 3, Total: 4},
	"reloading, nothing running": {Revision: "r1", State: v1.AgentReloading},
	"failed":                     {Revision: "r2", State: v1.AgentFailed, Running: "r1", Ready: 2, Total: 2, Message: "worker web/0 exited: exit status 3; last output of web/0:\nfatal: syntax error"},
	"ready, older agent":         {Revision: "r1", State: v1.AgentReady, Ready: 1, Total: 1},
	"longest message":            {Revision: "r2", State: v1.AgentFailed, Running: "r1", Message: strings.Repeat("\x01", v1.MaxAgentMessageBytes)},
	"longest revision":           {Revision: strings.Repeat("a", 63), State: v1.AgentReady},
	"most workers":               {Revision: "r1", State: v1.AgentReady, Ready: v1.MaxAgentWorkers, Total: v1.MaxAgentWorkers},
	"groups, one outdated": {Revision: "r2", State: v1.AgentReady, Running: "r2", Ready: 3, Total: 3, Groups: []v1.AgentGroupStatus{
		{Name: "web", Spec: "0a1b2c3d4e"}, {Name: "gateway", Spec: "5f6a7b8c9d", Outdated: v1.GroupSpecChanged, Connections: 3}, {Name: "old", Spec: "0123456789", Outdated: v1.GroupRemoved},
	}},
	"most groups, longest message": {Revision: "r2", State: v1.AgentFailed, Running: "r1", Message: strings.Repeat("\x01", v1.MaxAgentMessageBytes), Groups: mostGroups()},
}

// mostGroups is the longest list of groups a report has.
func mostGroups() []v1.AgentGroupStatus {
	var out []v1.AgentGroupStatus
	for i := range v1.MaxAgentGroups {
		name := fmt.Sprintf("%s%02d", strings.Repeat("g", v1.MaxGroupNameLen-2), i)
		out = append(out, v1.AgentGroupStatus{Name: name, Spec: strings.Repeat("f", v1.GroupSpecHashLength), Outdated: v1.GroupSpecChanged, Connections: v1.MaxAgentConnections})
	}
	return out
}

// validReportEntries are an entry for each of validReports.
func validReportEntries() []TableEntry {
	entries := make([]TableEntry, 0, len(validReports))
	for name, report := range validReports {
		entries = append(entries, Entry(name, report))
	}
	return entries
}

var _ = Describe("ParseAgentStatus", func() {
	DescribeTable("reads back what the agent writes",
		func(want v1.AgentStatus) {
			raw, err := json.Marshal(want)
			Expect(err).NotTo(HaveOccurred())
			got, err := v1.ParseAgentStatus(string(raw))
			Expect(err).NotTo(HaveOccurred(), "ParseAgentStatus(%s)", raw)
			Expect(got).To(BeComparableTo(&want))
		},
		validReportEntries(),
	)

	DescribeTable("reads no report, and no error, from a blank value",
		func(blank string) {
			got, err := v1.ParseAgentStatus(blank)
			Expect(err).NotTo(HaveOccurred(), "ParseAgentStatus(%q)", blank)
			Expect(got).To(BeNil(), "ParseAgentStatus(%q)", blank)
		},
		Entry("empty", ""),
		Entry("spaces", "  "),
		Entry("a newline", "\n"),
	)

	It("reads a report with a field unknown here: an agent newer than the reader may add fields", func() {
		got, err := v1.ParseAgentStatus(`{"revision":"r1","state":"Ready","running":"r1","ready":1,"total":1,"since":"now"}`)
		Expect(err).NotTo(HaveOccurred())
		Expect(got.Revision).To(Equal("r1"))
	})

	DescribeTable("refuses what is not a report, saying why and naming the annotation",
		func(raw, want string) {
			got, err := v1.ParseAgentStatus(raw)
			Expect(err).To(HaveOccurred(), "ParseAgentStatus = %+v; want an error", got)
			Expect(got).To(BeNil(), "a report beside the error %v", err)
			Expect(err.Error()).To(SatisfyAll(ContainSubstring(want), ContainSubstring(v1.StatusAnnotation)))
		},
		Entry("not JSON", "Ready", "not a JSON object"),
		Entry("null", "null", "not a JSON object"),
		Entry("a list", `[{"revision":"r1","state":"Ready"}]`, "not a JSON object"),
		Entry("a string", `"Ready"`, "not a JSON object"),
		Entry("empty object", `{}`, `state "": must be Reloading, Ready or Failed`),
		Entry("cut short", `{"revision":"r1","state":"Rea`, "unreadable"),
		Entry("trailing garbage", `{"revision":"r1","state":"Ready"} {}`, "unreadable"),
		Entry("unknown state", `{"revision":"r1","state":"Exploded"}`, `state "Exploded"`),
		Entry("no revision", `{"state":"Ready"}`, "revision: no revision"),
		Entry("revision with a slash", `{"revision":"../../etc","state":"Ready"}`, `revision: "../../etc"`),
		Entry("revision too long", `{"revision":"`+strings.Repeat("a", 64)+`","state":"Ready"}`, "revision: 64 characters, more than 63"),
		Entry("running not a revision", `{"revision":"r1","state":"Reloading","running":"r 0"}`, `running: "r 0"`),
		Entry("ready at another", `{"revision":"r2","state":"Ready","running":"r1"}`, `state Ready at revision "r2" while running "r1"`),
		Entry("negative total", `{"revision":"r1","state":"Ready","total":-1}`, "total -1"),
		Entry("too many workers", `{"revision":"r1","state":"Ready","ready":5000,"total":5000}`, "total 5000: must be from 0 to 4096"),
		Entry("more ready than total", `{"revision":"r1","state":"Ready","ready":3,"total":2}`, "ready 3: must be from 0 to total (2)"),
		Entry("count not a number", `{"revision":"r1","state":"Ready","ready":"all"}`, "unreadable"),
		Entry("count overflows", `{"revision":"r1","state":"Ready","total":99999999999}`, "unreadable"),
		Entry("message too long", `{"revision":"r1","state":"Failed","message":"`+strings.Repeat("x", v1.MaxAgentMessageBytes+1)+`"}`, "message: 4097 bytes, more than 4096"),
		Entry("value too long", `{"revision":"r1","state":"Ready","x":"`+strings.Repeat(" ", v1.MaxAgentStatusBytes)+`"}`, "more than the 32768 an agent writes"),
		Entry("group without a name", `{"revision":"r1","state":"Ready","groups":[{"spec":"0a1b"}]}`, `groups[0].name ""`),
		Entry("group spec not a hash", `{"revision":"r1","state":"Ready","groups":[{"name":"web","spec":"<b>"}]}`, `groups[0].spec "<b>"`),
		Entry("unknown outdated", `{"revision":"r1","state":"Ready","groups":[{"name":"web","spec":"0a","outdated":"Old"}]}`, `groups[0].outdated "Old"`),
		Entry("negative connections", `{"revision":"r1","state":"Ready","groups":[{"name":"gateway","spec":"0a","connections":-1}]}`, `groups[0].connections -1: must be from 0 to 16777216`),
		Entry("too many connections", `{"revision":"r1","state":"Ready","groups":[{"name":"gateway","spec":"0a","connections":16777217}]}`, `groups[0].connections 16777217`),
		Entry("too many groups", `{"revision":"r1","state":"Ready","groups":[`+strings.Repeat(`{"name":"a","spec":"0"},`, v1.MaxAgentGroups)+`{"name":"a","spec":"0"}]}`, "groups: 33, more than 32"),
	)
})

var _ = Describe("ShortenAgentMessage", func() {
	It("leaves a short message as it is", func() {
		short := "worker web/0 exited"
		Expect(v1.ShortenAgentMessage(short)).To(Equal(short))
	})

	It("keeps the beginning and the end of a long one, in valid UTF-8", func() {
		long := "reason: not ready in time; last output:\n" + strings.Repeat("é", v1.MaxAgentMessageBytes) + "\nthe last line"
		got := v1.ShortenAgentMessage(long)
		Expect(len(got)).To(BeNumerically("<=", v1.MaxAgentMessageBytes), "shortened to %d bytes", len(got))
		Expect(utf8.ValidString(got)).To(BeTrue(), "shortened to invalid UTF-8")
		Expect(got).To(SatisfyAll(HavePrefix("reason: not ready in time"), HaveSuffix("\nthe last line"), ContainSubstring(" [...] ")),
			"the shortened message lost its beginning or its end")
	})

	It("replaces invalid UTF-8", func() {
		Expect(v1.ShortenAgentMessage("bad \xff byte")).To(Equal("bad \uFFFD byte"))
	})
})

// FuzzParseAgentStatus: whatever the annotation holds, the parser does not
// panic, accepts only a valid report, within bounds, and reads back the
// same report from what it accepted. `go test` runs the seeds; `go test
// -fuzz FuzzParseAgentStatus ./api/v1alpha1` searches further.
func FuzzParseAgentStatus(f *testing.F) {
	for _, st := range validReports {
		raw, err := json.Marshal(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(raw))
	}
	for _, seed := range []string{
		"", "null", "{}", "[]", `"x"`, "0", "{", `{"state":"Ready"}`,
		`{"revision":"r1","state":"Ready","ready":-5,"total":-3}`,
		`{"revision":"r1","state":"Ready","ready":2147483647,"total":2147483647}`,
		`{"REVISION":"r1","STATE":"Ready"}`,
		`{"revision":"r1","revision":"r 2","state":"Ready"}`,
		`{"revision":"r1","state":"Ready","message":"\ud800"}`,
		"{\"revision\":\"r1\",\"state\":\"Failed\",\"message\":\"\xff\xfe\"}",
		`{"revision":"r1","state":"Ready","running":{"nested":[1,2,{"a":null}]}}`,
		`{"revision":"r1","state":"Ready"}` + strings.Repeat(" ", 100),
		strings.Repeat("[", 10000),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		st, err := v1.ParseAgentStatus(raw)
		if err != nil {
			if st != nil {
				t.Fatalf("a report %+v and an error %v", st, err)
			}
			return
		}
		if st == nil {
			if strings.TrimSpace(raw) != "" {
				t.Fatalf("no report and no error for %q", raw)
			}
			return
		}
		if len(raw) > v1.MaxAgentStatusBytes {
			t.Fatalf("accepted %d bytes", len(raw))
		}
		if err := st.Validate(); err != nil {
			t.Fatalf("accepted an invalid report %+v: %v", st, err)
		}
		again, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		back, err := v1.ParseAgentStatus(string(again))
		if err != nil {
			t.Fatalf("the report %+v, written again, is refused: %v", st, err)
		}
		if diff := cmp.Diff(st, back); diff != "" {
			t.Fatalf("the report, written again, reads back otherwise (-first +again):\n%s", diff)
		}
	})
}
