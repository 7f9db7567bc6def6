package v1alpha1_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	v1 "github.com/softreload/softreload/api/v1alpha1"
)

func validGroup(name string, listen ...v1.ListenAddress) v1.WorkerGroup {
	g := v1.WorkerGroup{Name: name, Command: []string{"./server"}, Listen: listen}
	v1.SetGroupDefaults(&g)
	return g
}

// errStrings renders an ErrorList as "field: type" so a table names what is
// refused without repeating messages.
func errStrings(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field+": "+string(e.Type))
	}
	return out
}

func TestValidateGroups(t *testing.T) {
	tests := map[string]struct {
		mutate func(gs []v1.WorkerGroup) []v1.WorkerGroup
		want   []string
	}{
		"valid": {mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { return gs }},
		"no groups": {
			mutate: func([]v1.WorkerGroup) []v1.WorkerGroup { return nil },
			want:   []string{"groups: FieldValueRequired"},
		},
		"duplicate group names": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[1].Name = "web"; return gs },
			want:   []string{"groups[1].name: FieldValueDuplicate"},
		},
		"bad group name": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Name = "Web_1"; return gs },
			want:   []string{"groups[0].name: FieldValueInvalid"},
		},
		"count 0": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Count = 0; return gs },
			want:   []string{"groups[0].count: FieldValueInvalid"},
		},
		"count 257": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Count = 257; return gs },
			want:   []string{"groups[0].count: FieldValueInvalid"},
		},
		"no command": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Command = nil; return gs },
			want:   []string{"groups[0].command: FieldValueRequired"},
		},
		"empty program": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Command = []string{""}; return gs },
			want:   []string{"groups[0].command[0]: FieldValueInvalid"},
		},
		"listen without port": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"tcp://127.0.0.1"}
				return gs
			},
			want: []string{"groups[0].listen[0]: FieldValueInvalid"},
		},
		"listen port 0": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Listen = []v1.ListenAddress{"tcp://:0"}; return gs },
			want:   []string{"groups[0].listen[0]: FieldValueInvalid"},
		},
		"listen port 65536": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"tcp://:65536"}
				return gs
			},
			want: []string{"groups[0].listen[0]: FieldValueInvalid"},
		},
		"tcp6 without brackets": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"tcp6://::1:80"}
				return gs
			},
			want: []string{"groups[0].listen[0]: FieldValueInvalid"},
		},
		"relative unix path": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"unix://run/a.sock"}
				return gs
			},
			want: []string{"groups[0].listen[0]: FieldValueInvalid"},
		},
		"udp": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Listen = []v1.ListenAddress{"udp://:53"}; return gs },
			want:   []string{"groups[0].listen[0]: FieldValueInvalid"},
		},
		"all accepted address forms": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"tcp://:8080", "tcp4://127.0.0.1:1", "tcp6://[::1]:65535", "tcp://[::]:80", "unix:///run/app.sock", "tcp://localhost:9000"}
				return gs
			},
		},
		"same address twice in a group": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"tcp://:8080", "tcp://:8080"}
				return gs
			},
			want: []string{"groups[0].listen[1]: FieldValueDuplicate"},
		},
		"same address in two groups": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[1].Listen = []v1.ListenAddress{"tcp://127.0.0.1:8080"}
				return gs
			},
			want: []string{"groups[1].listen[0]: FieldValueInvalid"},
		},
		"bad stop signal": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].StopSignal = "TERM"; return gs },
			want:   []string{"groups[0].stopSignal: FieldValueNotSupported"},
		},
		"stop timeout 0": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].StopTimeoutSeconds = 0; return gs },
			want:   []string{"groups[0].stopTimeoutSeconds: FieldValueInvalid"},
		},
		"stop timeout 3601": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].StopTimeoutSeconds = 3601; return gs },
			want:   []string{"groups[0].stopTimeoutSeconds: FieldValueInvalid"},
		},
		"readiness type": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Readiness.Type = "HTTP"; return gs },
			want:   []string{"groups[0].readiness.type: FieldValueNotSupported"},
		},
		"readiness delay not below timeout": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Readiness.DelaySeconds = ptr.To[int32](60)
				return gs
			},
			want: []string{"groups[0].readiness.delaySeconds: FieldValueInvalid"},
		},
		"readiness delay above 600": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Readiness.DelaySeconds = ptr.To[int32](601)
				gs[0].Readiness.TimeoutSeconds = 900
				return gs
			},
			want: []string{"groups[0].readiness.delaySeconds: FieldValueInvalid"},
		},
		"notify ignores delay": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Readiness = v1.Readiness{Type: v1.ReadinessNotify, DelaySeconds: ptr.To[int32](5), TimeoutSeconds: 2}
				return gs
			},
		},
		"readiness timeout 0": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Readiness.TimeoutSeconds = 0; return gs },
			want:   []string{"groups[0].readiness.timeoutSeconds: FieldValueInvalid", "groups[0].readiness.delaySeconds: FieldValueInvalid"},
		},
		"env name": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Env = []v1.EnvVar{{Name: "1A"}, {Name: "B"}, {Name: "B"}}
				return gs
			},
			want: []string{"groups[0].env[0].name: FieldValueInvalid", "groups[0].env[2].name: FieldValueDuplicate"},
		},
		"reserved environment names": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Env = []v1.EnvVar{{Name: "LISTEN_FDS"}, {Name: "APP"}, {Name: "SOFTRELOAD_GROUP"}, {Name: "NOTIFY_SOCKET"}}
				gs[1].Env = []v1.EnvVar{{Name: "LISTEN_PID"}, {Name: "LISTEN_FDNAMES"}, {Name: "SOFTRELOAD_X"}, {Name: "SOFTRELOADED"}}
				return gs
			},
			want: []string{
				"groups[0].env[0].name: FieldValueInvalid", "groups[0].env[2].name: FieldValueInvalid", "groups[0].env[3].name: FieldValueInvalid",
				"groups[1].env[0].name: FieldValueInvalid", "groups[1].env[1].name: FieldValueInvalid", "groups[1].env[2].name: FieldValueInvalid",
			},
		},
		"wildcard and a specific host on one port": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"tcp://0.0.0.0:80"}
				gs[1].Listen = []v1.ListenAddress{"tcp://127.0.0.1:80"}
				return gs
			},
			want: []string{"groups[1].listen[0]: FieldValueInvalid"},
		},
		"wildcard and a specific host on one port, in one group": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"tcp://127.0.0.1:80", "tcp://:80"}
				return gs
			},
			want: []string{"groups[0].listen[1]: FieldValueInvalid"},
		},
		"one unix path written two ways": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[1].Listen = []v1.ListenAddress{"unix:///run//./app.sock"}
				gs[0].Listen = []v1.ListenAddress{"unix:///run/app.sock"}
				return gs
			},
			want: []string{"groups[1].listen[0]: FieldValueInvalid"},
		},
		"one port, apart by family or host": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				gs[0].Listen = []v1.ListenAddress{"tcp4://0.0.0.0:80", "tcp://127.0.0.1:81"}
				gs[1].Listen = []v1.ListenAddress{"tcp6://[::]:80", "tcp://127.0.0.2:81", "tcp://[::1]:81"}
				return gs
			},
		},
		"too many groups": {
			mutate: func(gs []v1.WorkerGroup) []v1.WorkerGroup {
				var out []v1.WorkerGroup
				for i := 0; i < 17; i++ {
					out = append(out, validGroup(strings.Repeat("a", i+1)))
				}
				return out
			},
			want: []string{"groups: FieldValueTooMany"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			gs := tc.mutate([]v1.WorkerGroup{validGroup("web", "tcp://127.0.0.1:8080"), validGroup("gateway", "unix:///run/gw.sock")})
			got := errStrings(v1.ValidateGroups(gs, field.NewPath("groups")))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ValidateGroups (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateGroupsMessageNamesTheOtherGroup(t *testing.T) {
	gs := []v1.WorkerGroup{validGroup("web", "tcp://:80"), validGroup("api", "tcp://:80")}
	errs := v1.ValidateGroups(gs, field.NewPath("groups"))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `group "web"`) || !strings.Contains(errs[0].Error(), "groups[1].listen[0]") {
		t.Fatalf("want one error naming groups[1].listen[0] and group \"web\", got %v", errs)
	}
}

// TestListenConflict is the table of which addresses cannot both be bound;
// TestCRD runs the same table against the API server's rule.
func TestListenConflict(t *testing.T) {
	for _, tc := range ListenConflicts {
		if got := v1.ListenConflict(tc.A, tc.B); got != tc.Conflict {
			t.Errorf("ListenConflict(%s, %s) = %v, want %v", tc.A, tc.B, got, tc.Conflict)
		}
		if got := v1.ListenConflict(tc.B, tc.A); got != tc.Conflict {
			t.Errorf("ListenConflict(%s, %s) = %v, want %v", tc.B, tc.A, got, tc.Conflict)
		}
	}
}

// ListenConflicts are pairs of listen addresses in two groups of one pool,
// and whether they cannot both be bound.
var ListenConflicts = []struct {
	A, B     v1.ListenAddress
	Conflict bool
}{
	{"tcp://0.0.0.0:80", "tcp://127.0.0.1:80", true},
	{"tcp://:80", "tcp://127.0.0.1:80", true},
	{"tcp://[::]:80", "tcp://0.0.0.0:80", true},
	{"tcp://[::]:80", "tcp://127.0.0.1:80", true},
	{"tcp://0.0.0.0:80", "tcp6://[::1]:80", true},
	{"tcp4://0.0.0.0:80", "tcp://10.0.0.1:80", true},
	{"tcp4://127.0.0.1:80", "tcp://127.0.0.1:80", true},
	{"tcp6://[::]:80", "tcp://[::1]:80", true},
	{"tcp://LOCALHOST:80", "tcp://localhost:80", true},
	{"tcp://localhost:80", "tcp://:80", true},
	{"unix:///run/app.sock", "unix:///run//app.sock", true},
	{"unix:///run/app.sock", "unix:///run/./app.sock", true},
	{"tcp://0.0.0.0:80", "tcp://127.0.0.1:81", false},
	{"tcp://127.0.0.1:80", "tcp://127.0.0.2:80", false},
	{"tcp://127.0.0.1:80", "tcp://[::1]:80", false},
	{"tcp4://0.0.0.0:80", "tcp6://[::]:80", false},
	{"tcp4://0.0.0.0:80", "tcp://[::1]:80", false},
	{"tcp6://[::]:80", "tcp://127.0.0.1:80", false},
	{"unix:///run/a.sock", "unix:///run/b.sock", false},
	{"unix:///run/80", "tcp://:80", false},
}

func TestValidateStrategy(t *testing.T) {
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(i int32) *intstr.IntOrString { v := intstr.FromInt32(i); return &v }
	tests := map[string]struct {
		s    v1.RolloutStrategy
		want []string
	}{
		"defaults":           {},
		"percent":            {s: v1.RolloutStrategy{MaxUnavailable: pct("100%")}},
		"bad percent":        {s: v1.RolloutStrategy{MaxUnavailable: pct("0%")}, want: []string{"strategy.maxUnavailable: FieldValueInvalid"}},
		"zero unavailable":   {s: v1.RolloutStrategy{MaxUnavailable: num(-1)}, want: []string{"strategy.maxUnavailable: FieldValueInvalid"}},
		"bad replacement":    {s: v1.RolloutStrategy{Replacement: "Recreate"}, want: []string{"strategy.replacement: FieldValueNotSupported"}},
		"maxSurge 257":       {s: v1.RolloutStrategy{MaxSurge: 257}, want: []string{"strategy.maxSurge: FieldValueInvalid"}},
		"deadline 5":         {s: v1.RolloutStrategy{ProgressDeadlineSeconds: 5}, want: []string{"strategy.progressDeadlineSeconds: FieldValueInvalid"}},
		"rollback Sometimes": {s: v1.RolloutStrategy{Rollback: "Sometimes"}, want: []string{"strategy.rollback: FieldValueNotSupported"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.s
			v1.SetStrategyDefaults(&s)
			got := errStrings(v1.ValidateStrategy(&s, field.NewPath("strategy")))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ValidateStrategy (-want +got):\n%s", diff)
			}
		})
	}
}
