package v1alpha1

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits of the API, as in the CRD's markers.
const (
	MaxGroups         = 16
	MaxCount          = 256
	MaxListen         = 8
	MaxCommandItems   = 64
	MaxArgs           = 256
	MaxEnv            = 128
	MaxItemLength     = 4096
	MaxAddressLength  = 256
	MaxGroupNameLen   = 63
	MaxEnvNameLength  = 256
	MaxEnvValueLength = 32768
)

var (
	groupNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envNameRE   = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	portRE      = `([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])`
	tcpRE       = regexp.MustCompile(`^(tcp|tcp4)://([a-zA-Z0-9.-]*|\[[0-9a-fA-F:.]+\]):` + portRE + `$`)
	tcp6RE      = regexp.MustCompile(`^tcp6://\[[0-9a-fA-F:.]+\]:` + portRE + `$`)
	unixRE      = regexp.MustCompile(`^unix:///[^\x00]+$`)
	percentRE   = regexp.MustCompile(`^(100|[1-9][0-9]?)%$`)
)

// Signals lists the stop signals a group may name.
var Signals = []Signal{"SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGKILL"}

// ValidateListenAddress reports whether a is one of tcp://HOST:PORT,
// tcp4://HOST:PORT, tcp6://[HOST]:PORT (port 1-65535) or
// unix:///absolute/path, the rule the CRD enforces.
func ValidateListenAddress(a ListenAddress) error {
	s := string(a)
	if len(s) > MaxAddressLength {
		return fmt.Errorf("longer than %d characters", MaxAddressLength)
	}
	if tcpRE.MatchString(s) || tcp6RE.MatchString(s) || unixRE.MatchString(s) {
		return nil
	}
	return fmt.Errorf("must be tcp://HOST:PORT, tcp4://HOST:PORT, tcp6://[HOST]:PORT (port 1-65535) or unix:///absolute/path")
}

// ValidateGroups checks groups as the API server checks a WorkerPool's
// spec.groups, so that a standalone config is refused for the same reasons
// and with the field named. Defaults should be set first.
func ValidateGroups(groups []WorkerGroup, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(groups) == 0 {
		errs = append(errs, field.Required(fldPath, "at least one group is needed"))
	}
	if len(groups) > MaxGroups {
		errs = append(errs, field.TooMany(fldPath, len(groups), MaxGroups))
	}
	names := map[string]int{}
	type bound struct {
		group string
		addr  ListenAddress
	}
	var earlier []bound
	for i := range groups {
		g := &groups[i]
		p := fldPath.Index(i)
		errs = append(errs, ValidateGroup(g, p)...)
		if g.Name != "" {
			if _, dup := names[g.Name]; dup {
				errs = append(errs, field.Duplicate(p.Child("name"), g.Name))
			}
			names[g.Name] = i
		}
		for j, a := range g.Listen {
			for _, e := range earlier {
				if e.group == g.Name && e.addr == a {
					break // a duplicate in one group, reported by ValidateGroup
				}
				if e.addr == a {
					errs = append(errs, field.Invalid(p.Child("listen").Index(j), a,
						fmt.Sprintf("two groups listen on the same address: group %q listens on it too", e.group)))
					break
				}
				if ListenConflict(e.addr, a) {
					errs = append(errs, field.Invalid(p.Child("listen").Index(j), a,
						fmt.Sprintf("cannot be bound beside %s of group %q: %s", e.addr, e.group, conflictRule)))
					break
				}
			}
			earlier = append(earlier, bound{g.Name, a})
		}
	}
	return errs
}

// conflictRule says which listen addresses cannot both be bound, as the
// CRD's message on spec.groups says it.
const conflictRule = "the same unix socket path, or the same port on one host, or on a wildcard host (empty, 0.0.0.0 or [::]) and another host of the same address family"

// ListenConflict reports whether a and b, both valid listen addresses,
// cannot both be bound in one pod: the same unix socket path (after
// cleaning), or TCP addresses on the same port whose address families meet
// (tcp4 is IPv4, tcp6 is IPv6, tcp is IPv6 for a bracketed host, both for a
// wildcard, and IPv4 for any other host, as Go resolves a name) and whose hosts are
// equal or one of them is a wildcard (empty, 0.0.0.0 or [::]; with tcp,
// 0.0.0.0 and [::] bind both families, as Go's net.Listen does). Host names
// are compared as written: localhost and 127.0.0.1 are not found to meet.
// The CRD's rules on spec.groups are the same test written in CEL, except
// that they clean a unix path of "//" and "/./" only.
func ListenConflict(a, b ListenAddress) bool {
	x, okx := parseBind(a)
	y, oky := parseBind(b)
	if !okx || !oky || x.unix != y.unix {
		return false
	}
	if x.unix {
		return x.host == y.host
	}
	families := x.v4 && y.v4 || x.v6 && y.v6
	return x.port == y.port && families && (x.wildcard || y.wildcard || strings.EqualFold(x.host, y.host))
}

// bindSpec is what ListenConflict compares of an address: for unix, the
// cleaned path in host.
type bindSpec struct {
	unix, wildcard, v4, v6 bool
	host, port             string
}

func parseBind(a ListenAddress) (bindSpec, bool) {
	scheme, rest, ok := strings.Cut(string(a), "://")
	if !ok {
		return bindSpec{}, false
	}
	if scheme == "unix" {
		return bindSpec{unix: true, host: path.Clean(rest)}, true
	}
	i := strings.LastIndex(rest, ":")
	if i < 0 {
		return bindSpec{}, false
	}
	b := bindSpec{host: rest[:i], port: rest[i+1:]}
	b.wildcard = b.host == "" || b.host == "0.0.0.0" || b.host == "[::]"
	switch scheme {
	case "tcp4":
		b.v4 = true
	case "tcp6":
		b.v6 = true
	case "tcp":
		b.v4 = b.wildcard || !strings.HasPrefix(b.host, "[")
		b.v6 = b.wildcard || strings.HasPrefix(b.host, "[")
	default:
		return bindSpec{}, false
	}
	return b, true
}

// ReservedEnv are the environment variables the agent sets for every
// worker; a group's env may not name them, nor any name that starts with
// ReservedEnvPrefix.
var ReservedEnv = []string{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"}

// ReservedEnvPrefix starts the names of the variables that tell a worker
// about itself (SOFTRELOAD_GROUP, SOFTRELOAD_WORKER_ID, ...).
const ReservedEnvPrefix = "SOFTRELOAD_"

func reservedEnv(name string) bool {
	return slices.Contains(ReservedEnv, name) || strings.HasPrefix(name, ReservedEnvPrefix)
}

// ValidateGroup checks one group.
func ValidateGroup(g *WorkerGroup, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case g.Name == "":
		errs = append(errs, field.Required(p.Child("name"), "a group needs a name"))
	case len(g.Name) > MaxGroupNameLen:
		errs = append(errs, field.TooLong(p.Child("name"), g.Name, MaxGroupNameLen))
	case !groupNameRE.MatchString(g.Name):
		errs = append(errs, field.Invalid(p.Child("name"), g.Name, "must be lower case letters, digits and '-', starting and ending with a letter or digit"))
	}

	switch {
	case len(g.Command) == 0:
		errs = append(errs, field.Required(p.Child("command"), "the program to run is missing"))
	case len(g.Command) > MaxCommandItems:
		errs = append(errs, field.TooMany(p.Child("command"), len(g.Command), MaxCommandItems))
	case g.Command[0] == "":
		errs = append(errs, field.Invalid(p.Child("command").Index(0), g.Command[0], "the program (the first item) must not be empty"))
	}
	errs = append(errs, validateItems(g.Command, p.Child("command"))...)
	if len(g.Args) > MaxArgs {
		errs = append(errs, field.TooMany(p.Child("args"), len(g.Args), MaxArgs))
	}
	errs = append(errs, validateItems(g.Args, p.Child("args"))...)

	if len(g.Env) > MaxEnv {
		errs = append(errs, field.TooMany(p.Child("env"), len(g.Env), MaxEnv))
	}
	envNames := map[string]bool{}
	for i, e := range g.Env {
		ep := p.Child("env").Index(i)
		switch {
		case e.Name == "":
			errs = append(errs, field.Required(ep.Child("name"), "an environment variable needs a name"))
		case len(e.Name) > MaxEnvNameLength:
			errs = append(errs, field.TooLong(ep.Child("name"), e.Name, MaxEnvNameLength))
		case !envNameRE.MatchString(e.Name):
			errs = append(errs, field.Invalid(ep.Child("name"), e.Name, "must be letters, digits, '-', '.' and '_', not starting with a digit"))
		case envNames[e.Name]:
			errs = append(errs, field.Duplicate(ep.Child("name"), e.Name))
		case reservedEnv(e.Name):
			errs = append(errs, field.Invalid(ep.Child("name"), e.Name,
				"reserved: the agent sets LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, NOTIFY_SOCKET and SOFTRELOAD_* for every worker"))
		}
		envNames[e.Name] = true
		if len(e.Value) > MaxEnvValueLength {
			errs = append(errs, field.TooLong(ep.Child("value"), "", MaxEnvValueLength))
		}
	}

	if g.Count < 1 || g.Count > MaxCount {
		errs = append(errs, field.Invalid(p.Child("count"), g.Count, fmt.Sprintf("must be from 1 to %d", MaxCount)))
	}

	if len(g.Listen) > MaxListen {
		errs = append(errs, field.TooMany(p.Child("listen"), len(g.Listen), MaxListen))
	}
	seen := map[ListenAddress]bool{}
	for i, a := range g.Listen {
		lp := p.Child("listen").Index(i)
		if err := ValidateListenAddress(a); err != nil {
			errs = append(errs, field.Invalid(lp, a, err.Error()))
		}
		if seen[a] {
			errs = append(errs, field.Duplicate(lp, a))
		}
		seen[a] = true
	}

	errs = append(errs, validateReadiness(&g.Readiness, p.Child("readiness"))...)
	if !validSignal(g.StopSignal) {
		errs = append(errs, field.NotSupported(p.Child("stopSignal"), g.StopSignal, Signals))
	}
	if g.StopTimeoutSeconds < 1 || g.StopTimeoutSeconds > 3600 {
		errs = append(errs, field.Invalid(p.Child("stopTimeoutSeconds"), g.StopTimeoutSeconds, "must be from 1 to 3600"))
	}
	return errs
}

func validateItems(items []string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, s := range items {
		if len(s) > MaxItemLength {
			errs = append(errs, field.TooLong(p.Index(i), "", MaxItemLength))
		}
	}
	return errs
}

func validateReadiness(r *Readiness, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch r.Type {
	case ReadinessNotify, ReadinessDelay:
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), r.Type, []ReadinessType{ReadinessNotify, ReadinessDelay}))
	}
	if r.DelaySeconds != nil && (*r.DelaySeconds < 0 || *r.DelaySeconds > 600) {
		errs = append(errs, field.Invalid(p.Child("delaySeconds"), *r.DelaySeconds, "must be from 0 to 600"))
	}
	if r.TimeoutSeconds < 1 || r.TimeoutSeconds > 3600 {
		errs = append(errs, field.Invalid(p.Child("timeoutSeconds"), r.TimeoutSeconds, "must be from 1 to 3600"))
	}
	if r.Type == ReadinessDelay && r.DelaySeconds != nil && *r.DelaySeconds >= r.TimeoutSeconds {
		errs = append(errs, field.Invalid(p.Child("delaySeconds"), *r.DelaySeconds, "delaySeconds must be less than timeoutSeconds"))
	}
	return errs
}

func validSignal(s Signal) bool {
	for _, v := range Signals {
		if s == v {
			return true
		}
	}
	return false
}

// ValidateStrategy checks a RolloutStrategy as the CRD does. Defaults should
// be set first.
func ValidateStrategy(s *RolloutStrategy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if m := s.MaxUnavailable; m != nil {
		switch m.Type {
		case intstr.Int:
			if m.IntVal <= 0 {
				errs = append(errs, field.Invalid(p.Child("maxUnavailable"), m.IntVal, "must be a number above 0 or a percentage from 1% to 100%"))
			}
		case intstr.String:
			if !percentRE.MatchString(m.StrVal) {
				errs = append(errs, field.Invalid(p.Child("maxUnavailable"), m.StrVal, "must be a number above 0 or a percentage from 1% to 100%"))
			}
		}
	}
	switch s.Replacement {
	case SurgeFirst, StopFirst:
	default:
		errs = append(errs, field.NotSupported(p.Child("replacement"), s.Replacement, []ReplacementPolicy{SurgeFirst, StopFirst}))
	}
	if s.MaxSurge < 1 || s.MaxSurge > 256 {
		errs = append(errs, field.Invalid(p.Child("maxSurge"), s.MaxSurge, "must be from 1 to 256"))
	}
	if s.ProgressDeadlineSeconds < 10 || s.ProgressDeadlineSeconds > 86400 {
		errs = append(errs, field.Invalid(p.Child("progressDeadlineSeconds"), s.ProgressDeadlineSeconds, "must be from 10 to 86400"))
	}
	switch s.Rollback {
	case RollbackAuto, RollbackManual:
	default:
		errs = append(errs, field.NotSupported(p.Child("rollback"), s.Rollback, []RollbackPolicy{RollbackAuto, RollbackManual}))
	}
	switch s.PodReplacement {
	case PodReplacementHold, PodReplacementEvict:
	default:
		errs = append(errs, field.NotSupported(p.Child("podReplacement"), s.PodReplacement, []PodReplacementPolicy{PodReplacementHold, PodReplacementEvict}))
	}
	return errs
}
