package v1alpha1_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	v1 "github.com/softreload/softreload/api/v1alpha1"
)

func TestSetGroupDefaults(t *testing.T) {
	tests := map[string]struct {
		in, want v1.WorkerGroup
	}{
		"empty group gets the CRD's defaults": {
			in: v1.WorkerGroup{Name: "web", Command: []string{"./w"}},
			want: v1.WorkerGroup{
				Name: "web", Command: []string{"./w"}, Count: 1, Reloadable: ptr.To(true),
				Readiness:  v1.Readiness{Type: v1.ReadinessDelay, DelaySeconds: ptr.To[int32](1), TimeoutSeconds: 60},
				StopSignal: "SIGTERM", StopTimeoutSeconds: 30,
			},
		},
		"set fields are kept, a partial readiness is completed": {
			in: v1.WorkerGroup{
				Name: "gw", Command: []string{"gw"}, Count: 4, Reloadable: ptr.To(false),
				Readiness:  v1.Readiness{Type: v1.ReadinessNotify, DelaySeconds: ptr.To[int32](0)},
				StopSignal: "SIGQUIT", StopTimeoutSeconds: 5,
			},
			want: v1.WorkerGroup{
				Name: "gw", Command: []string{"gw"}, Count: 4, Reloadable: ptr.To(false),
				Readiness:  v1.Readiness{Type: v1.ReadinessNotify, DelaySeconds: ptr.To[int32](0), TimeoutSeconds: 60},
				StopSignal: "SIGQUIT", StopTimeoutSeconds: 5,
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := tc.in
			v1.SetGroupDefaults(&got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SetGroupDefaults (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetStrategyDefaults(t *testing.T) {
	one := intstr.FromInt32(1)
	pct := intstr.FromString("25%")
	tests := map[string]struct {
		in, want v1.RolloutStrategy
	}{
		"empty": {
			want: v1.RolloutStrategy{MaxUnavailable: &one, Replacement: v1.SurgeFirst, MaxSurge: 1, ProgressDeadlineSeconds: 600, Rollback: v1.RollbackAuto},
		},
		"kept": {
			in:   v1.RolloutStrategy{MaxUnavailable: &pct, Replacement: v1.StopFirst, MaxSurge: 3, ProgressDeadlineSeconds: 60, Rollback: v1.RollbackManual},
			want: v1.RolloutStrategy{MaxUnavailable: &pct, Replacement: v1.StopFirst, MaxSurge: 3, ProgressDeadlineSeconds: 60, Rollback: v1.RollbackManual},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := tc.in
			v1.SetStrategyDefaults(&got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SetStrategyDefaults (-want +got):\n%s", diff)
			}
		})
	}
}
