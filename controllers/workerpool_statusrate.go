package controllers

import (
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// A rollout moves a few pods per reconcile, and each reconcile changes the
// pool's counts. Writing the status every time cost, in a pool of 100 pods
// with a budget of 10, about one status write per pod told. So a status
// that differs from the written one by its progress alone (the counts, the
// conditions' messages and times, and a rollout in progress that starts or
// stops waiting for its agents' access) is written at most once per
// progressWriteInterval; the reconcile is then called again when the
// interval is over, so that the last counts are written too. Any other
// change — a condition's status or reason, a revision, the history, the
// observed generation — is written at once.
//
// Progress-only writes also share a budget across the manager, so that
// they do not grow with the number of pools rolling at once: the interval
// is longer when more than progressWritesPerSecond pools roll, each pool's
// the same, so that all of them together make about that many progress
// writes a second. A pool's counts are for people to read; the rollout
// itself needs none of them. With up to 5 pools rolling, each is written
// once a second; with 50 pools of 100 pods rolling at once, every 10 s,
// where the interval of 1 s alone made about 12 status writes per pool
// (0.12 per pod) in a rollout of 25 s.
//
// A rollout in progress whose pods wait for their agents' access (reason
// WaitingForAgentAccess) and one whose pods move (RolloutInProgress) differ
// in their reason alone: Progressing is True, nothing is wrong. Every new
// revision waits a moment for the agent-access controller, so its first
// status, written at once with the new history, says it waits, and the next
// one that its pods move; that second write, once per rollout, was the
// write a pool of 100 pods made most after its counts.

// progressWriteInterval is how often a pool's status is written when only
// its progress changed, at most; progressWritesPerSecond how many such
// writes the manager makes in a second across the pools rolling at once,
// once there are more than that: client-go's default rate of requests for
// a client.
const (
	progressWriteInterval   = time.Second
	progressWritesPerSecond = 5
)

// progressOnly says whether status b differs from a by its progress alone.
func progressOnly(a, b workersv1alpha1.WorkerPoolStatus) bool {
	return equality.Semantic.DeepEqual(withoutProgress(a), withoutProgress(b))
}

func withoutProgress(st workersv1alpha1.WorkerPoolStatus) workersv1alpha1.WorkerPoolStatus {
	st.Pods, st.UpdatedPods, st.ReadyPods, st.ReloadingPods, st.FailedPods, st.OutdatedPods = 0, 0, 0, 0, 0, 0
	conds := make([]metav1.Condition, len(st.Conditions))
	for i, c := range st.Conditions {
		c.Message, c.LastTransitionTime = "", metav1.Time{}
		if c.Type == workersv1alpha1.ConditionProgressing && c.Status == metav1.ConditionTrue &&
			c.Reason == workersv1alpha1.ReasonWaitingForAgentAccess {
			c.Reason = workersv1alpha1.ReasonRolloutInProgress // the same rollout, moving or waiting
		}
		conds[i] = c
	}
	st.Conditions = conds
	return st
}

// progressWait returns how long a progress-only status write of the pool
// must wait, 0 if it may be written now.
func (m *memory) progressWait(pool types.NamespacedName, now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm, ok := m.pools[pool]
	if !ok || pm.statusWrittenAt.IsZero() {
		return 0
	}
	rolling := 0
	for _, p := range m.pools {
		if p.rolling {
			rolling++
		}
	}
	interval := max(progressWriteInterval, time.Duration(rolling)*time.Second/progressWritesPerSecond)
	return max(0, pm.statusWrittenAt.Add(interval).Sub(now))
}

// setRolling records whether the pool's status, as last computed, says a
// rollout is in progress (see progressWait).
func (m *memory) setRolling(pool types.NamespacedName, st workersv1alpha1.WorkerPoolStatus) {
	c := meta.FindStatusCondition(st.Conditions, workersv1alpha1.ConditionProgressing)
	rolling := c != nil && c.Status == metav1.ConditionTrue
	m.mu.Lock()
	defer m.mu.Unlock()
	m.of(pool).rolling = rolling
}

// wroteStatusAt records when the pool's status was last written.
func (m *memory) wroteStatusAt(pool types.NamespacedName, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.of(pool).statusWrittenAt = now
}
