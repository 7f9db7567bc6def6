package v1alpha1

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Bounds of an agent's report. The controller reads the StatusAnnotation
// that each pod's own agent writes: a value that breaks them is refused,
// never trusted, whatever wrote it.
const (
	// MaxAgentMessageBytes bounds AgentStatus.Message; the agent shortens a
	// longer one (ShortenAgentMessage).
	MaxAgentMessageBytes = 4096
	// MaxAgentStatusBytes bounds the annotation's value: room for the
	// longest message, even with every byte escaped in JSON (\u00XX).
	MaxAgentStatusBytes = 32768
	// MaxAgentWorkers bounds AgentStatus.Total: the most workers a pod
	// runs.
	MaxAgentWorkers = MaxGroups * MaxCount
	// MaxRevisionLength bounds a revision's name: a label value.
	MaxRevisionLength = 63
	// MaxAgentGroups bounds AgentStatus.Groups: the groups of a revision,
	// and as many kept from older ones (groups that are not reloadable keep
	// running when a revision removes them).
	MaxAgentGroups = 2 * MaxGroups
	// GroupSpecHashLength is the length of GroupSpecHash's hashes.
	GroupSpecHashLength = 10
	// MaxAgentConnections bounds AgentGroupStatus.Connections.
	MaxAgentConnections = 1 << 24
)

// AgentGroupStatus says which spec one group of an agent runs.
type AgentGroupStatus struct {
	// Name is the group's name.
	Name string `json:"name"`
	// Spec is GroupSpecHash of the spec its workers run.
	Spec string `json:"spec"`
	// Outdated, when set, says why the group does not run the spec the
	// reported revision gives it: a group that is not reloadable keeps its
	// processes, and its spec, until its pod is replaced.
	Outdated GroupOutdatedReason `json:"outdated,omitempty"`
	// Connections is, for a group that is not reloadable (a gateway), how
	// many connections its workers hold that they accepted on the group's
	// listen addresses, as the agent last counted them; absent when 0, and
	// for reloadable groups, whose connections are not counted.
	Connections int32 `json:"connections,omitempty"`
}

// GroupOutdatedReason says why a group runs an older spec than its
// revision's.
type GroupOutdatedReason string

// Why a group runs an older spec than its revision's.
const (
	// GroupSpecChanged: the revision changes the spec of a group that is
	// not reloadable (its command, args, env, count, listen, readiness or
	// stop settings).
	GroupSpecChanged GroupOutdatedReason = "SpecChanged"
	// GroupRemoved: the revision has no such group, and the group is not
	// reloadable.
	GroupRemoved GroupOutdatedReason = "Removed"
)

// GroupSpecHash is a short hash of a group's spec, defaults set: two specs
// with the same hash run the same processes.
func GroupSpecHash(g WorkerGroup) string {
	g = *g.DeepCopy()
	SetGroupDefaults(&g)
	b, err := json.Marshal(g)
	if err != nil {
		// A WorkerGroup is plain data; this cannot happen.
		panic(fmt.Sprintf("hashing group %q: %v", g.Name, err))
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])[:GroupSpecHashLength]
}

// Outdated lists the groups that run an older spec than their revision's.
func (s AgentStatus) Outdated() []AgentGroupStatus {
	var out []AgentGroupStatus
	for _, g := range s.Groups {
		if g.Outdated != "" {
			out = append(out, g)
		}
	}
	return out
}

// Same reports whether s and o say the same (a method named Equal would
// take over cmp.Diff in tests).
func (s AgentStatus) Same(o AgentStatus) bool {
	return s.Revision == o.Revision && s.State == o.State && s.Running == o.Running &&
		s.Ready == o.Ready && s.Total == o.Total && s.Message == o.Message && slices.Equal(s.Groups, o.Groups)
}

// revisionRE is what a revision's name is made of: a label value (it is the
// RevisionLabel of its snapshot).
var revisionRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

// ParseAgentStatus reads an agent's report from the value of its pod's
// StatusAnnotation. An empty value is no report: nil, and no error. A value
// that is not a valid report (not a JSON object, an unknown state, a
// revision that cannot be one, counts out of bounds, too long) is an error
// that says what is wrong, and no report. Fields it does not know are
// ignored, for agents newer than the reader.
func ParseAgentStatus(raw string) (*AgentStatus, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, nil
	}
	if len(raw) > MaxAgentStatusBytes {
		return nil, fmt.Errorf("%s annotation: %d bytes, more than the %d an agent writes", StatusAnnotation, len(raw), MaxAgentStatusBytes)
	}
	if trimmed := bytes.TrimSpace([]byte(raw)); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%s annotation: not a JSON object", StatusAnnotation)
	}
	st := &AgentStatus{}
	if err := json.Unmarshal([]byte(raw), st); err != nil {
		return nil, fmt.Errorf("unreadable %s annotation: %w", StatusAnnotation, err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("%s annotation: %w", StatusAnnotation, err)
	}
	return st, nil
}

// Validate says what makes s an invalid report, if anything.
func (s AgentStatus) Validate() error {
	var errs []error
	switch s.State {
	case AgentReloading, AgentReady, AgentFailed:
	default:
		errs = append(errs, fmt.Errorf("state %q: must be %s, %s or %s", s.State, AgentReloading, AgentReady, AgentFailed))
	}
	if err := ValidateRevisionName(s.Revision); err != nil {
		errs = append(errs, fmt.Errorf("revision: %w", err))
	}
	if s.Running != "" {
		if err := ValidateRevisionName(s.Running); err != nil {
			errs = append(errs, fmt.Errorf("running: %w", err))
		}
	}
	if s.State == AgentReady && s.Running != "" && s.Running != s.Revision {
		errs = append(errs, fmt.Errorf("state Ready at revision %q while running %q", s.Revision, s.Running))
	}
	if s.Total < 0 || s.Total > MaxAgentWorkers {
		errs = append(errs, fmt.Errorf("total %d: must be from 0 to %d", s.Total, MaxAgentWorkers))
	}
	if s.Ready < 0 || s.Ready > s.Total {
		errs = append(errs, fmt.Errorf("ready %d: must be from 0 to total (%d)", s.Ready, s.Total))
	}
	if len(s.Message) > MaxAgentMessageBytes {
		errs = append(errs, fmt.Errorf("message: %d bytes, more than %d", len(s.Message), MaxAgentMessageBytes))
	}
	if !utf8.ValidString(s.Message) {
		errs = append(errs, errors.New("message: not UTF-8"))
	}
	errs = append(errs, validateAgentGroups(s.Groups)...)
	return errors.Join(errs...)
}

// hashRE is what GroupSpecHash makes.
var hashRE = regexp.MustCompile(`^[0-9a-f]{1,64}$`)

// validateAgentGroups says what is wrong with a report's groups.
func validateAgentGroups(groups []AgentGroupStatus) []error {
	if len(groups) > MaxAgentGroups {
		return []error{fmt.Errorf("groups: %d, more than %d", len(groups), MaxAgentGroups)}
	}
	var errs []error
	for i, g := range groups {
		if len(g.Name) > MaxGroupNameLen || !groupNameRE.MatchString(g.Name) {
			errs = append(errs, fmt.Errorf("groups[%d].name %q: not a group name", i, g.Name))
		}
		if !hashRE.MatchString(g.Spec) {
			errs = append(errs, fmt.Errorf("groups[%d].spec %q: not a spec hash", i, g.Spec))
		}
		switch g.Outdated {
		case "", GroupSpecChanged, GroupRemoved:
		default:
			errs = append(errs, fmt.Errorf("groups[%d].outdated %q: must be empty, %s or %s", i, g.Outdated, GroupSpecChanged, GroupRemoved))
		}
		if g.Connections < 0 || g.Connections > MaxAgentConnections {
			errs = append(errs, fmt.Errorf("groups[%d].connections %d: must be from 0 to %d", i, g.Connections, MaxAgentConnections))
		}
	}
	return errs
}

// ValidateRevisionName says what is wrong with a revision's name, if
// anything: it must be a label value of 1 to 63 letters, digits, '-', '_'
// and '.', that starts and ends with a letter or a digit.
func ValidateRevisionName(rev string) error {
	switch {
	case rev == "":
		return errors.New("no revision")
	case len(rev) > MaxRevisionLength:
		return fmt.Errorf("%d characters, more than %d", len(rev), MaxRevisionLength)
	case !revisionRE.MatchString(rev):
		return fmt.Errorf("%q: a revision is letters, digits, '-', '_' and '.', starting and ending with a letter or a digit", rev)
	}
	return nil
}

// ShortenAgentMessage returns msg cut to MaxAgentMessageBytes, if longer:
// its beginning (the reason) and its end (a worker's last lines), with
// " [...] " between, and never a rune cut in two. An invalid UTF-8 byte
// becomes U+FFFD.
func ShortenAgentMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) <= MaxAgentMessageBytes {
		return msg
	}
	const cut = " [...] "
	head := MaxAgentMessageBytes / 4
	tail := MaxAgentMessageBytes - head - len(cut)
	h, t := msg[:head], msg[len(msg)-tail:]
	for !utf8.ValidString(h) {
		h = h[:len(h)-1]
	}
	for !utf8.ValidString(t) {
		t = t[1:]
	}
	return h + cut + t
}
