package v1alpha1_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

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
		{Name: "web", Spec: "0a1b2c3d4e"}, {Name: "gateway", Spec: "5f6a7b8c9d", Outdated: v1.GroupSpecChanged}, {Name: "old", Spec: "0123456789", Outdated: v1.GroupRemoved},
	}},
	"most groups, longest message": {Revision: "r2", State: v1.AgentFailed, Running: "r1", Message: strings.Repeat("\x01", v1.MaxAgentMessageBytes), Groups: mostGroups()},
}

// mostGroups is the longest list of groups a report has.
func mostGroups() []v1.AgentGroupStatus {
	var out []v1.AgentGroupStatus
	for i := range v1.MaxAgentGroups {
		name := fmt.Sprintf("%s%02d", strings.Repeat("g", v1.MaxGroupNameLen-2), i)
		out = append(out, v1.AgentGroupStatus{Name: name, Spec: strings.Repeat("f", v1.GroupSpecHashLength), Outdated: v1.GroupSpecChanged})
	}
	return out
}

func TestParseAgentStatusReadsWhatTheAgentWrites(t *testing.T) {
	for name, want := range validReports {
		t.Run(name, func(t *testing.T) {
			raw, err := json.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			got, err := v1.ParseAgentStatus(string(raw))
			if err != nil {
				t.Fatalf("ParseAgentStatus(%s): %v", raw, err)
			}
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
		})
	}
	for _, blank := range []string{"", "  ", "\n"} {
		if got, err := v1.ParseAgentStatus(blank); got != nil || err != nil {
			t.Errorf("ParseAgentStatus(%q) = %+v, %v; want no report and no error", blank, got, err)
		}
	}
	// An agent newer than the reader may add fields.
	if got, err := v1.ParseAgentStatus(`{"revision":"r1","state":"Ready","running":"r1","ready":1,"total":1,"since":"now"}`); err != nil || got.Revision != "r1" {
		t.Errorf("a report with a field unknown here: %+v, %v", got, err)
	}
}

func TestParseAgentStatusRefusesWhatIsNotAReport(t *testing.T) {
	tests := map[string]struct {
		raw  string
		want string // in the error
	}{
		"not JSON":               {raw: "Ready", want: "not a JSON object"},
		"null":                   {raw: "null", want: "not a JSON object"},
		"a list":                 {raw: `[{"revision":"r1","state":"Ready"}]`, want: "not a JSON object"},
		"a string":               {raw: `"Ready"`, want: "not a JSON object"},
		"empty object":           {raw: `{}`, want: `state "": must be Reloading, Ready or Failed`},
		"cut short":              {raw: `{"revision":"r1","state":"Rea`, want: "unreadable"},
		"trailing garbage":       {raw: `{"revision":"r1","state":"Ready"} {}`, want: "unreadable"},
		"unknown state":          {raw: `{"revision":"r1","state":"Exploded"}`, want: `state "Exploded"`},
		"no revision":            {raw: `{"state":"Ready"}`, want: "revision: no revision"},
		"revision with a slash":  {raw: `{"revision":"../../etc","state":"Ready"}`, want: `revision: "../../etc"`},
		"revision too long":      {raw: `{"revision":"` + strings.Repeat("a", 64) + `","state":"Ready"}`, want: "revision: 64 characters, more than 63"},
		"running not a revision": {raw: `{"revision":"r1","state":"Reloading","running":"r 0"}`, want: `running: "r 0"`},
		"ready at another":       {raw: `{"revision":"r2","state":"Ready","running":"r1"}`, want: `state Ready at revision "r2" while running "r1"`},
		"negative total":         {raw: `{"revision":"r1","state":"Ready","total":-1}`, want: "total -1"},
		"too many workers":       {raw: `{"revision":"r1","state":"Ready","ready":5000,"total":5000}`, want: "total 5000: must be from 0 to 4096"},
		"more ready than total":  {raw: `{"revision":"r1","state":"Ready","ready":3,"total":2}`, want: "ready 3: must be from 0 to total (2)"},
		"count not a number":     {raw: `{"revision":"r1","state":"Ready","ready":"all"}`, want: "unreadable"},
		"count overflows":        {raw: `{"revision":"r1","state":"Ready","total":99999999999}`, want: "unreadable"},
		"message too long":       {raw: `{"revision":"r1","state":"Failed","message":"` + strings.Repeat("x", v1.MaxAgentMessageBytes+1) + `"}`, want: "message: 4097 bytes, more than 4096"},
		"value too long":         {raw: `{"revision":"r1","state":"Ready","x":"` + strings.Repeat(" ", v1.MaxAgentStatusBytes) + `"}`, want: "more than the 32768 an agent writes"},
		"group without a name":   {raw: `{"revision":"r1","state":"Ready","groups":[{"spec":"0a1b"}]}`, want: `groups[0].name ""`},
		"group spec not a hash":  {raw: `{"revision":"r1","state":"Ready","groups":[{"name":"web","spec":"<b>"}]}`, want: `groups[0].spec "<b>"`},
		"unknown outdated":       {raw: `{"revision":"r1","state":"Ready","groups":[{"name":"web","spec":"0a","outdated":"Old"}]}`, want: `groups[0].outdated "Old"`},
		"too many groups":        {raw: `{"revision":"r1","state":"Ready","groups":[` + strings.Repeat(`{"name":"a","spec":"0"},`, v1.MaxAgentGroups) + `{"name":"a","spec":"0"}]}`, want: "groups: 33, more than 32"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := v1.ParseAgentStatus(tc.raw)
			if err == nil || got != nil {
				t.Fatalf("ParseAgentStatus = %+v, %v; want an error", got, err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), v1.StatusAnnotation) {
				t.Errorf("error %q does not say %q and name %s", err, tc.want, v1.StatusAnnotation)
			}
		})
	}
}

func TestShortenAgentMessage(t *testing.T) {
	short := "worker web/0 exited"
	if got := v1.ShortenAgentMessage(short); got != short {
		t.Errorf("a short message changed: %q", got)
	}
	long := "reason: not ready in time; last output:\n" + strings.Repeat("é", v1.MaxAgentMessageBytes) + "\nthe last line"
	got := v1.ShortenAgentMessage(long)
	if len(got) > v1.MaxAgentMessageBytes || !utf8.ValidString(got) {
		t.Fatalf("shortened to %d bytes, valid UTF-8: %v", len(got), utf8.ValidString(got))
	}
	if !strings.HasPrefix(got, "reason: not ready in time") || !strings.HasSuffix(got, "\nthe last line") || !strings.Contains(got, " [...] ") {
		t.Errorf("the shortened message lost its beginning or its end: %q...%q", got[:40], got[len(got)-40:])
	}
	if got := v1.ShortenAgentMessage("bad \xff byte"); got != "bad \uFFFD byte" {
		t.Errorf("invalid UTF-8: %q", got)
	}
}

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
