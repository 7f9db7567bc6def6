package v1alpha1_test

import (
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
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

var _ = Describe("ValidateGroups", func() {
	DescribeTable("refuses what is wrong in two groups, naming each field",
		func(mutate func(gs []v1.WorkerGroup) []v1.WorkerGroup, want []string) {
			gs := mutate([]v1.WorkerGroup{validGroup("web", "tcp://127.0.0.1:8080"), validGroup("gateway", "unix:///run/gw.sock")})
			Expect(errStrings(v1.ValidateGroups(gs, field.NewPath("groups")))).To(BeComparableTo(want))
		},
		Entry("valid", func(gs []v1.WorkerGroup) []v1.WorkerGroup { return gs }, nil),
		Entry("no groups", func([]v1.WorkerGroup) []v1.WorkerGroup { return nil }, []string{"groups: FieldValueRequired"}),
		Entry("duplicate group names", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[1].Name = "web"; return gs }, []string{"groups[1].name: FieldValueDuplicate"}),
		Entry("bad group name", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Name = "Web_1"; return gs }, []string{"groups[0].name: FieldValueInvalid"}),
		Entry("count 0", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Count = 0; return gs }, []string{"groups[0].count: FieldValueInvalid"}),
		Entry("count 257", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Count = 257; return gs }, []string{"groups[0].count: FieldValueInvalid"}),
		Entry("no command", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Command = nil; return gs }, []string{"groups[0].command: FieldValueRequired"}),
		Entry("empty program", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Command = []string{""}; return gs }, []string{"groups[0].command[0]: FieldValueInvalid"}),
		Entry("listen without port", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"tcp://127.0.0.1"}
			return gs
		}, []string{"groups[0].listen[0]: FieldValueInvalid"}),
		Entry("listen port 0", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Listen = []v1.ListenAddress{"tcp://:0"}; return gs }, []string{"groups[0].listen[0]: FieldValueInvalid"}),
		Entry("listen port 65536", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"tcp://:65536"}
			return gs
		}, []string{"groups[0].listen[0]: FieldValueInvalid"}),
		Entry("tcp6 without brackets", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"tcp6://::1:80"}
			return gs
		}, []string{"groups[0].listen[0]: FieldValueInvalid"}),
		Entry("relative unix path", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"unix://run/a.sock"}
			return gs
		}, []string{"groups[0].listen[0]: FieldValueInvalid"}),
		Entry("udp", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Listen = []v1.ListenAddress{"udp://:53"}; return gs }, []string{"groups[0].listen[0]: FieldValueInvalid"}),
		Entry("all accepted address forms", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"tcp://:8080", "tcp4://127.0.0.1:1", "tcp6://[::1]:65535", "tcp://[::]:80", "unix:///run/app.sock", "tcp://localhost:9000"}
			return gs
		}, nil),
		Entry("same address twice in a group", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"tcp://:8080", "tcp://:8080"}
			return gs
		}, []string{"groups[0].listen[1]: FieldValueDuplicate"}),
		Entry("same address in two groups", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[1].Listen = []v1.ListenAddress{"tcp://127.0.0.1:8080"}
			return gs
		}, []string{"groups[1].listen[0]: FieldValueInvalid"}),
		Entry("bad stop signal", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].StopSignal = "TERM"; return gs }, []string{"groups[0].stopSignal: FieldValueNotSupported"}),
		Entry("stop timeout 0", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].StopTimeoutSeconds = 0; return gs }, []string{"groups[0].stopTimeoutSeconds: FieldValueInvalid"}),
		Entry("stop timeout 3601", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].StopTimeoutSeconds = 3601; return gs }, []string{"groups[0].stopTimeoutSeconds: FieldValueInvalid"}),
		Entry("readiness type", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Readiness.Type = "HTTP"; return gs }, []string{"groups[0].readiness.type: FieldValueNotSupported"}),
		Entry("readiness delay not below timeout", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Readiness.DelaySeconds = ptr.To[int32](60)
			return gs
		}, []string{"groups[0].readiness.delaySeconds: FieldValueInvalid"}),
		Entry("readiness delay above 600", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Readiness.DelaySeconds = ptr.To[int32](601)
			gs[0].Readiness.TimeoutSeconds = 900
			return gs
		}, []string{"groups[0].readiness.delaySeconds: FieldValueInvalid"}),
		Entry("notify ignores delay", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Readiness = v1.Readiness{Type: v1.ReadinessNotify, DelaySeconds: ptr.To[int32](5), TimeoutSeconds: 2}
			return gs
		}, nil),
		Entry("readiness timeout 0", func(gs []v1.WorkerGroup) []v1.WorkerGroup { gs[0].Readiness.TimeoutSeconds = 0; return gs }, []string{"groups[0].readiness.timeoutSeconds: FieldValueInvalid", "groups[0].readiness.delaySeconds: FieldValueInvalid"}),
		Entry("env name", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Env = []v1.EnvVar{{Name: "1A"}, {Name: "B"}, {Name: "B"}}
			return gs
		}, []string{"groups[0].env[0].name: FieldValueInvalid", "groups[0].env[2].name: FieldValueDuplicate"}),
		Entry("reserved environment names", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Env = []v1.EnvVar{{Name: "LISTEN_FDS"}, {Name: "APP"}, {Name: "SOFTRELOAD_GROUP"}, {Name: "NOTIFY_SOCKET"}}
			gs[1].Env = []v1.EnvVar{{Name: "LISTEN_PID"}, {Name: "LISTEN_FDNAMES"}, {Name: "SOFTRELOAD_X"}, {Name: "SOFTRELOADED"}}
			return gs
		}, []string{
			"groups[0].env[0].name: FieldValueInvalid", "groups[0].env[2].name: FieldValueInvalid", "groups[0].env[3].name: FieldValueInvalid",
			"groups[1].env[0].name: FieldValueInvalid", "groups[1].env[1].name: FieldValueInvalid", "groups[1].env[2].name: FieldValueInvalid",
		}),
		Entry("wildcard and a specific host on one port", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"tcp://0.0.0.0:80"}
			gs[1].Listen = []v1.ListenAddress{"tcp://127.0.0.1:80"}
			return gs
		}, []string{"groups[1].listen[0]: FieldValueInvalid"}),
		Entry("wildcard and a specific host on one port, in one group", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"tcp://127.0.0.1:80", "tcp://:80"}
			return gs
		}, []string{"groups[0].listen[1]: FieldValueInvalid"}),
		Entry("one unix path written two ways", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[1].Listen = []v1.ListenAddress{"unix:///run//./app.sock"}
			gs[0].Listen = []v1.ListenAddress{"unix:///run/app.sock"}
			return gs
		}, []string{"groups[1].listen[0]: FieldValueInvalid"}),
		Entry("one port, apart by family or host", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			gs[0].Listen = []v1.ListenAddress{"tcp4://0.0.0.0:80", "tcp://127.0.0.1:81"}
			gs[1].Listen = []v1.ListenAddress{"tcp6://[::]:80", "tcp://127.0.0.2:81", "tcp://[::1]:81"}
			return gs
		}, nil),
		Entry("too many groups", func(gs []v1.WorkerGroup) []v1.WorkerGroup {
			var out []v1.WorkerGroup
			for i := 0; i < 17; i++ {
				out = append(out, validGroup(strings.Repeat("a", i+1)))
			}
			return out
		}, []string{"groups: FieldValueTooMany"}),
	)

	It("names the other group of an address two groups listen on", func() {
		gs := []v1.WorkerGroup{validGroup("web", "tcp://:80"), validGroup("api", "tcp://:80")}
		errs := v1.ValidateGroups(gs, field.NewPath("groups"))
		Expect(errs).To(HaveLen(1), "want one error naming groups[1].listen[0] and group \"web\"")
		Expect(errs[0].Error()).To(SatisfyAll(ContainSubstring(`group "web"`), ContainSubstring("groups[1].listen[0]")))
	})
})

// The table of which addresses cannot both be bound; the CRD's specs run
// the same table against the API server's rule.
var _ = DescribeTable("ListenConflict",
	func(a, b v1.ListenAddress, conflict bool) {
		Expect(v1.ListenConflict(a, b)).To(Equal(conflict), "ListenConflict(%s, %s)", a, b)
		Expect(v1.ListenConflict(b, a)).To(Equal(conflict), "ListenConflict(%s, %s)", b, a)
	},
	listenConflictEntries(),
)

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

var _ = DescribeTable("ValidateStrategy, after defaults",
	func(s v1.RolloutStrategy, want []string) {
		v1.SetStrategyDefaults(&s)
		Expect(errStrings(v1.ValidateStrategy(&s, field.NewPath("strategy")))).To(BeComparableTo(want))
	},
	Entry("defaults", v1.RolloutStrategy{}, nil),
	Entry("percent", v1.RolloutStrategy{MaxUnavailable: pct("100%")}, nil),
	Entry("bad percent", v1.RolloutStrategy{MaxUnavailable: pct("0%")}, []string{"strategy.maxUnavailable: FieldValueInvalid"}),
	Entry("zero unavailable", v1.RolloutStrategy{MaxUnavailable: num(-1)}, []string{"strategy.maxUnavailable: FieldValueInvalid"}),
	Entry("bad replacement", v1.RolloutStrategy{Replacement: "Recreate"}, []string{"strategy.replacement: FieldValueNotSupported"}),
	Entry("maxSurge 257", v1.RolloutStrategy{MaxSurge: 257}, []string{"strategy.maxSurge: FieldValueInvalid"}),
	Entry("deadline 5", v1.RolloutStrategy{ProgressDeadlineSeconds: 5}, []string{"strategy.progressDeadlineSeconds: FieldValueInvalid"}),
	Entry("rollback Sometimes", v1.RolloutStrategy{Rollback: "Sometimes"}, []string{"strategy.rollback: FieldValueNotSupported"}),
	Entry("podReplacement Evict", v1.RolloutStrategy{PodReplacement: v1.PodReplacementEvict}, nil),
	Entry("podReplacement Recreate", v1.RolloutStrategy{PodReplacement: "Recreate"}, []string{"strategy.podReplacement: FieldValueNotSupported"}),
)

func pct(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }

func num(i int32) *intstr.IntOrString { v := intstr.FromInt32(i); return &v }
