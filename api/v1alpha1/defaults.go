package v1alpha1

import (
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Defaults of a WorkerGroup and a RolloutStrategy. They are the values of the
// +kubebuilder:default markers, so that a standalone agent config means what
// the same groups mean in a WorkerPool.
const (
	DefaultCount                   int32 = 1
	DefaultReadinessType                 = ReadinessDelay
	DefaultReadinessDelaySeconds   int32 = 1
	DefaultReadinessTimeoutSeconds int32 = 60
	DefaultStopSignal                    = Signal("SIGTERM")
	DefaultStopTimeoutSeconds      int32 = 30

	DefaultReplacement                   = SurgeFirst
	DefaultMaxSurge                int32 = 1
	DefaultMaxUnavailable                = 1
	DefaultProgressDeadlineSeconds int32 = 600
	DefaultRollback                      = RollbackAuto
	DefaultPodReplacement                = PodReplacementHold
)

// SetGroupDefaults fills in the fields of g that are unset, as the API server
// does for a WorkerPool's groups.
func SetGroupDefaults(g *WorkerGroup) {
	if g.Count == 0 {
		g.Count = DefaultCount
	}
	if g.Reloadable == nil {
		t := true
		g.Reloadable = &t
	}
	SetReadinessDefaults(&g.Readiness)
	if g.StopSignal == "" {
		g.StopSignal = DefaultStopSignal
	}
	if g.StopTimeoutSeconds == 0 {
		g.StopTimeoutSeconds = DefaultStopTimeoutSeconds
	}
}

// SetReadinessDefaults fills in the unset fields of r. An absent readiness
// becomes {type: Delay, delaySeconds: 1, timeoutSeconds: 60}; a partial one
// gets the same per-field defaults, as in the CRD.
func SetReadinessDefaults(r *Readiness) {
	if r.Type == "" {
		r.Type = DefaultReadinessType
	}
	if r.DelaySeconds == nil {
		d := DefaultReadinessDelaySeconds
		r.DelaySeconds = &d
	}
	if r.TimeoutSeconds == 0 {
		r.TimeoutSeconds = DefaultReadinessTimeoutSeconds
	}
}

// SetStrategyDefaults fills in the fields of s that are unset.
func SetStrategyDefaults(s *RolloutStrategy) {
	if s.MaxUnavailable == nil {
		m := intstr.FromInt32(DefaultMaxUnavailable)
		s.MaxUnavailable = &m
	}
	if s.Replacement == "" {
		s.Replacement = DefaultReplacement
	}
	if s.MaxSurge == 0 {
		s.MaxSurge = DefaultMaxSurge
	}
	if s.ProgressDeadlineSeconds == 0 {
		s.ProgressDeadlineSeconds = DefaultProgressDeadlineSeconds
	}
	if s.Rollback == "" {
		s.Rollback = DefaultRollback
	}
	if s.PodReplacement == "" {
		s.PodReplacement = DefaultPodReplacement
	}
}
