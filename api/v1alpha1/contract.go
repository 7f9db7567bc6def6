package v1alpha1

import "time"

// Labels and annotations of the pod protocol between the controller and the
// agent in each pod.
const (
	// PoolLabel on a pod names the WorkerPool that governs it; the injection
	// webhook acts on pods that carry it. A pod belongs to that pool alone,
	// and only while the pool's selector matches it too.
	PoolLabel = "softreload.dev/pool"

	// DesiredRevisionAnnotation on a pod is the revision its agent must run.
	// The controller (or the webhook, at creation) writes it.
	DesiredRevisionAnnotation = "softreload.dev/desired-revision"

	// StatusAnnotation on a pod is the agent's report, an AgentStatus as
	// JSON. Only the agent writes it.
	StatusAnnotation = "softreload.dev/status"

	// CodeImageAnnotation and CodePathAnnotation on a pod of a code-image
	// pool name the image its softreload-code container runs and the
	// directory of the code in it. The controller (or the webhook, at
	// creation) writes them in the same write as the container's image, and
	// the container reads them through the downward API each time it
	// starts: only the image of a running container can change, never its
	// command or environment, so this is how it learns what it delivers.
	CodeImageAnnotation = "softreload.dev/code-image"
	CodePathAnnotation  = "softreload.dev/code-path"

	// RestartedAtAnnotation on a WorkerPool asks for a reload with unchanged
	// code: a new value makes a new revision (like kubectl rollout restart).
	RestartedAtAnnotation = "softreload.dev/restartedAt"

	// ReplacePodsAtAnnotation on a WorkerPool asks the controller to
	// replace, through the Eviction API and within the budget, every pod
	// created before its value (an RFC 3339 time), whatever
	// spec.strategy.podReplacement says: kubectl softreload replace-pods
	// sets it to now. Pods created later are not touched, so a request is
	// done once every pod is newer, and the annotation may stay.
	ReplacePodsAtAnnotation = "softreload.dev/replacePodsAt"

	// RollbackToAnnotation on a WorkerPool asks the controller to roll the
	// pods back to an earlier revision whose snapshot is still kept, by
	// name. It holds until the code or the spec changes again, which makes a
	// new revision as usual.
	RollbackToAnnotation = "softreload.dev/rollback-to"

	// RevisionLabel on a revision snapshot ConfigMap names the revision.
	RevisionLabel = "softreload.dev/revision"

	// PoolNameLabel on a revision snapshot ConfigMap names its WorkerPool.
	PoolNameLabel = "softreload.dev/pool-name"
)

// AgentState is the state an agent reports for its pod.
type AgentState string

const (
	// AgentReloading means the agent is replacing workers.
	AgentReloading AgentState = "Reloading"
	// AgentReady means every worker runs the reported revision and is ready.
	AgentReady AgentState = "Ready"
	// AgentFailed means the reload to the reported revision failed and the agent
	// went back to the previous one.
	AgentFailed AgentState = "Failed"
)

// ReloadingReportDelay is how long a reload lasts before its agent reports
// it Reloading. A reload that ends sooner is reported once, by its outcome
// (Ready or Failed): one write to the pod instead of two, a third fewer of
// a rollout's API writes when reloads are quick. Nothing waits on a
// Reloading report: a pod told a revision counts as in flight until its
// agent settles on it.
const ReloadingReportDelay = time.Second

// AgentStatus is the agent's report in the StatusAnnotation of its pod.
//
// +kubebuilder:object:generate=false
type AgentStatus struct {
	// Revision is the revision the report is about: the one running when
	// Ready, the one being loaded when Reloading, the one that failed when
	// Failed.
	Revision string `json:"revision"`
	// State is Reloading, Ready or Failed.
	State AgentState `json:"state"`
	// Running is the revision the workers run now. After a failure it is
	// the previous revision, to which the agent rolled back.
	Running string `json:"running,omitempty"`
	// Ready and Total count the pod's workers.
	Ready int32 `json:"ready"`
	Total int32 `json:"total"`
	// Message says why, for Failed: the reason and the worker's last output.
	Message string `json:"message,omitempty"`
	// Groups says which spec each group runs (AgentGroupStatus).
	Groups []AgentGroupStatus `json:"groups,omitempty"`
}

// Condition types of a WorkerPool.
const (
	// ConditionAvailable is True when every selected pod runs a revision with
	// all its workers ready.
	ConditionAvailable = "Available"
	// ConditionProgressing is True while a revision rolls out.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when a rollout failed or stalled.
	ConditionDegraded = "Degraded"
	// ConditionSelectorOverlap is True when the selector matches pods the
	// pool does not govern: pods labelled for another pool, or not labelled
	// for any. The pool never writes to them and they hold no slot of its
	// budget; the message names a few.
	ConditionSelectorOverlap = "SelectorOverlap"
	// ConditionPodsOutdated is True when pods need to be replaced to run
	// the update revision fully: a group that is not reloadable keeps an
	// older spec in them (the agent reports it outdated), or a replacement
	// was asked for. The message names the pods and why.
	ConditionPodsOutdated = "PodsOutdated"
)

// Reasons of the PodsOutdated condition.
const (
	// ReasonPodReplacementHeld: spec.strategy.podReplacement is Hold; the
	// pods keep running as they are until they are replaced.
	ReasonPodReplacementHeld = "PodReplacementHeld"
	// ReasonReplacingPods: the pods are being evicted and replaced within
	// the budget.
	ReasonReplacingPods = "ReplacingPods"
	// ReasonEvictionBlocked: the Eviction API refused an eviction for now
	// (a PodDisruptionBudget allows no disruption); it is retried.
	ReasonEvictionBlocked = "EvictionBlocked"
	// ReasonAllPodsCurrent: no pod needs to be replaced.
	ReasonAllPodsCurrent = "AllPodsCurrent"
)

// Reasons of the SelectorOverlap condition.
const (
	// ReasonPodsOfOtherPools: some of the pods the selector matches are
	// labelled softreload.dev/pool with the name of another pool.
	ReasonPodsOfOtherPools = "PodsOfOtherPools"
	// ReasonPodsWithoutPoolLabel: some of the pods the selector matches
	// have no softreload.dev/pool label, and so no agent.
	ReasonPodsWithoutPoolLabel = "PodsWithoutPoolLabel"
	// ReasonNoOverlap: the pool governs every pod its selector matches.
	ReasonNoOverlap = "NoOverlap"
)

// Condition reasons of a WorkerPool.
const (
	ReasonAllPodsReady             = "AllPodsReady"
	ReasonPodsNotReady             = "PodsNotReady"
	ReasonNoPods                   = "NoPods"
	ReasonRolloutInProgress        = "RolloutInProgress"
	ReasonRolloutComplete          = "RolloutComplete"
	ReasonRolloutPaused            = "RolloutPaused"
	ReasonReloadFailed             = "ReloadFailed"
	ReasonRolledBack               = "RolledBack"
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	ReasonCodeSourceNotFound       = "CodeSourceNotFound"
	ReasonAsExpected               = "AsExpected"
)

// Condition reasons of a WorkerPool whose revision cannot be made or sent
// yet. All but the last are problems the user must fix (Degraded is True,
// and the message names the object or field); the last is a wait.
const (
	// ReasonSnapshotNameTaken: a ConfigMap that is not the revision's
	// snapshot has the snapshot's name.
	ReasonSnapshotNameTaken = "SnapshotNameTaken"
	// ReasonCodeTooLarge: the code is more than a ConfigMap, and so a
	// snapshot, may hold; it belongs in a code image.
	ReasonCodeTooLarge = "CodeTooLarge"
	// ReasonSnapshotNotCreated: the API server refused the snapshot (a
	// quota, an admission policy, a validation rule).
	ReasonSnapshotNotCreated = "SnapshotNotCreated"
	// ReasonInvalidSelector: spec.selector is not a valid label selector
	// (an unknown operator, values where none belong).
	ReasonInvalidSelector = "InvalidSelector"
	// ReasonWaitingForAgentAccess: pods wait to be told a revision until
	// their agents may read its snapshot.
	ReasonWaitingForAgentAccess = "WaitingForAgentAccess"
)
