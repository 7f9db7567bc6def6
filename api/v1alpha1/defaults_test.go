package v1alpha1_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	v1 "github.com/softreload/softreload/api/v1alpha1"
)

var _ = DescribeTable("SetGroupDefaults",
	func(in, want v1.WorkerGroup) {
		got := in
		v1.SetGroupDefaults(&got)
		Expect(got).To(BeComparableTo(want))
	},
	Entry("empty group gets the CRD's defaults", v1.WorkerGroup{Name: "web", Command: []string{"./w"}}, v1.WorkerGroup{
		Name: "web", Command: []string{"./w"}, Count: 1, Reloadable: ptr.To(true),
		Readiness:  v1.Readiness{Type: v1.ReadinessDelay, DelaySeconds: ptr.To[int32](1), TimeoutSeconds: 60},
		StopSignal: "SIGTERM", StopTimeoutSeconds: 30,
	}),
	Entry("set fields are kept, a partial readiness is completed", v1.WorkerGroup{
		Name: "gw", Command: []string{"gw"}, Count: 4, Reloadable: ptr.To(false),
		Readiness:  v1.Readiness{Type: v1.ReadinessNotify, DelaySeconds: ptr.To[int32](0)},
		StopSignal: "SIGQUIT", StopTimeoutSeconds: 5,
	}, v1.WorkerGroup{
		Name: "gw", Command: []string{"gw"}, Count: 4, Reloadable: ptr.To(false),
		Readiness:  v1.Readiness{Type: v1.ReadinessNotify, DelaySeconds: ptr.To[int32](0), TimeoutSeconds: 60},
		StopSignal: "SIGQUIT", StopTimeoutSeconds: 5,
	}),
)

// maxUnavailable values of the strategy defaults' entries.
var (
	oneUnavailable     = intstr.FromInt32(1)
	quarterUnavailable = intstr.FromString("25%")
)

var _ = DescribeTable("SetStrategyDefaults",
	func(in, want v1.RolloutStrategy) {
		got := in
		v1.SetStrategyDefaults(&got)
		Expect(got).To(BeComparableTo(want))
	},
	Entry("empty", v1.RolloutStrategy{}, v1.RolloutStrategy{MaxUnavailable: &oneUnavailable, Replacement: v1.SurgeFirst, MaxSurge: 1, ProgressDeadlineSeconds: 600, Rollback: v1.RollbackAuto, PodReplacement: v1.PodReplacementHold}),
	Entry("kept", v1.RolloutStrategy{MaxUnavailable: &quarterUnavailable, Replacement: v1.StopFirst, MaxSurge: 3, ProgressDeadlineSeconds: 60, Rollback: v1.RollbackManual, PodReplacement: v1.PodReplacementEvict}, v1.RolloutStrategy{MaxUnavailable: &quarterUnavailable, Replacement: v1.StopFirst, MaxSurge: 3, ProgressDeadlineSeconds: 60, Rollback: v1.RollbackManual, PodReplacement: v1.PodReplacementEvict}),
)
