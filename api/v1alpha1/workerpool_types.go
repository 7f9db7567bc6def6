package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// WorkerPoolSpec declares the worker groups that run inside the selected pods,
// where their code comes from and how a new revision rolls out.
//
// +kubebuilder:validation:XValidation:rule="self.groups.all(a, !has(a.listen) || self.groups.all(b, a.name == b.name || !has(b.listen) || a.listen.all(x, !(x in b.listen))))",message="groups: two groups listen on the same address",fieldPath=".groups"
// +kubebuilder:validation:XValidation:rule="self.groups.map(g, has(g.listen) ? g.listen.map(x, x.startsWith('unix:') ? [x, 'unix', x.substring(7).replace('/./', '/').replace('//', '/').replace('//', '/'), 'u'] : [x, x.substring(x.lastIndexOf(':') + 1), x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')).lowerAscii(), ((x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')) in ['0.0.0.0', '[::]'] || x.indexOf('/') + 2 == x.lastIndexOf(':')) ? 'w' : 's') + ((!x.startsWith('tcp6:') && ((x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')) in ['0.0.0.0', '[::]'] || x.indexOf('/') + 2 == x.lastIndexOf(':')) || !x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')).startsWith('['))) ? '4' : '-') + ((!x.startsWith('tcp4:') && ((x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')) in ['0.0.0.0', '[::]'] || x.indexOf('/') + 2 == x.lastIndexOf(':')) || x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')).startsWith('['))) ? '6' : '-')]) : []).all(ga, self.groups.map(g, has(g.listen) ? g.listen.map(x, x.startsWith('unix:') ? [x, 'unix', x.substring(7).replace('/./', '/').replace('//', '/').replace('//', '/'), 'u'] : [x, x.substring(x.lastIndexOf(':') + 1), x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')).lowerAscii(), ((x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')) in ['0.0.0.0', '[::]'] || x.indexOf('/') + 2 == x.lastIndexOf(':')) ? 'w' : 's') + ((!x.startsWith('tcp6:') && ((x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')) in ['0.0.0.0', '[::]'] || x.indexOf('/') + 2 == x.lastIndexOf(':')) || !x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')).startsWith('['))) ? '4' : '-') + ((!x.startsWith('tcp4:') && ((x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')) in ['0.0.0.0', '[::]'] || x.indexOf('/') + 2 == x.lastIndexOf(':')) || x.substring(x.indexOf('/') + 2, x.lastIndexOf(':')).startsWith('['))) ? '6' : '-')]) : []).all(gb, ga.all(a, gb.all(b, a[0] == b[0] || a[1] != b[1] || (a[1] == 'unix' ? a[2] != b[2] : !((a[2] == b[2] || a[3].startsWith('w') || b[3].startsWith('w')) && (a[3].contains('4') && b[3].contains('4') || a[3].contains('6') && b[3].contains('6'))))))))",message="groups: two listen addresses cannot both be bound: the same unix socket path, or the same port on one host, or on a wildcard host (empty, 0.0.0.0 or [::]) and another host of the same address family",fieldPath=".groups"
type WorkerPoolSpec struct {
	// selector picks the pods this pool governs, by label. The pods may belong
	// to any workload (Deployment, StatefulSet, ...); softreload neither owns
	// nor changes that workload. Of the pods it matches, the pool governs
	// those labelled softreload.dev/pool with its name; it must not be
	// empty, which would match every pod of the namespace.
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="selector: must not be empty: an empty selector matches every pod of the namespace; select the pods by label (e.g. matchLabels: {app: web})"
	Selector metav1.LabelSelector `json:"selector"`

	// container names the container the agent runs in. Empty means the first
	// container of the pod.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Container string `json:"container,omitempty"`

	// code says where a revision's files come from: exactly one of a
	// ConfigMap or a code image.
	// +required
	Code CodeSource `json:"code"`

	// groups are the worker groups the agent runs in each pod.
	// +required
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Groups []WorkerGroup `json:"groups"`

	// strategy says how a new revision rolls out across the pods and how
	// workers are replaced inside each pod.
	// +optional
	// +kubebuilder:default={}
	Strategy RolloutStrategy `json:"strategy,omitempty"`

	// paused holds the rollout where it is: no pod is moved to a new revision
	// until it is false again.
	// +optional
	Paused bool `json:"paused,omitempty"`

	// revisionHistoryLimit is how many old revision snapshots are kept for
	// rollback. Snapshots that a pod still runs are always kept.
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	RevisionHistoryLimit *int32 `json:"revisionHistoryLimit,omitempty"`
}

// CodeSource is where a revision's files come from. Exactly one field is set.
//
// +kubebuilder:validation:XValidation:rule="has(self.configMapRef) != has(self.image)",message="code: set exactly one of configMapRef or image"
type CodeSource struct {
	// configMapRef names a ConfigMap in the pool's namespace whose keys are
	// file names and whose values (data and binaryData) are the files.
	// +optional
	ConfigMapRef *ConfigMapCodeSource `json:"configMapRef,omitempty"`

	// image is a code image, delivered by a code container next to the
	// agent. A new reference (a new tag) is a new revision.
	// +optional
	Image *ImageCodeSource `json:"image,omitempty"`
}

// ConfigMapCodeSource names the ConfigMap that holds the code.
type ConfigMapCodeSource struct {
	// name of the ConfigMap, in the pool's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// ImageCodeSource is a code image and the directory inside it that holds
// the code.
type ImageCodeSource struct {
	// reference is the image, as a container's image field takes it
	// (registry/repository:tag or @digest).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.contains(' ')",message="reference: an image reference has no spaces"
	Reference string `json:"reference"`

	// path is the directory inside the image that holds the code.
	// +optional
	// +kubebuilder:default="/code"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="self.startsWith('/')",message="path: must be an absolute path"
	Path string `json:"path,omitempty"`
}

// WorkerGroup is a set of identical worker processes inside a pod.
type WorkerGroup struct {
	// name of the group, unique in the pool; workers see it as
	// SOFTRELOAD_GROUP.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// command is the program and its first arguments, run from the
	// revision's code directory. Each worker is a fresh exec of it.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="self[0] != ''",message="command: the program (the first item) must not be empty"
	Command []string `json:"command"`

	// args follow the command.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=4096
	Args []string `json:"args,omitempty"`

	// env is added to the environment each worker inherits from the agent.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=128
	Env []EnvVar `json:"env,omitempty"`

	// count is how many worker processes the group runs.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	Count int32 `json:"count,omitempty"`

	// reloadable false keeps the group's workers running across reloads,
	// for gateways that hold long-lived connections. They still restart if
	// they crash, on the revision they started with.
	// +optional
	// +kubebuilder:default=true
	Reloadable *bool `json:"reloadable,omitempty"`

	// listen are the addresses the agent binds once and hands to every
	// worker of the group (systemd socket activation: LISTEN_FDS from fd 3,
	// in this order): tcp://HOST:PORT, tcp4://HOST:PORT,
	// tcp6://[HOST]:PORT or unix:///absolute/path.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=8
	Listen []ListenAddress `json:"listen,omitempty"`

	// readiness is how a new worker proves it is ready to serve.
	// +optional
	// +kubebuilder:default={type: Delay, delaySeconds: 1, timeoutSeconds: 60}
	Readiness Readiness `json:"readiness,omitempty"`

	// stopSignal is sent to a worker to ask it to stop gracefully.
	// +optional
	// +kubebuilder:default=SIGTERM
	StopSignal Signal `json:"stopSignal,omitempty"`

	// stopTimeoutSeconds is how long a worker may take to stop after its
	// stop signal before it is killed.
	// +optional
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	StopTimeoutSeconds int32 `json:"stopTimeoutSeconds,omitempty"`
}

// EnvVar is one environment variable.
type EnvVar struct {
	// name of the variable. The names the agent sets for every worker are
	// reserved: LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, NOTIFY_SOCKET and
	// every name that starts with SOFTRELOAD_.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z][-._a-zA-Z0-9]*$`
	// +kubebuilder:validation:XValidation:rule="!(self in ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES', 'NOTIFY_SOCKET']) && !self.startsWith('SOFTRELOAD_')",message="name: reserved: the agent sets LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, NOTIFY_SOCKET and SOFTRELOAD_* for every worker"
	Name string `json:"name"`

	// value of the variable.
	// +optional
	// +kubebuilder:validation:MaxLength=32768
	Value string `json:"value,omitempty"`
}

// ListenAddress is tcp://HOST:PORT, tcp4://HOST:PORT, tcp6://[HOST]:PORT or
// unix:///absolute/path.
//
// +kubebuilder:validation:MaxLength=256
// +kubebuilder:validation:XValidation:rule="self.matches('^(tcp|tcp4)://([a-zA-Z0-9.-]*|\\\\[[0-9a-fA-F:.]+\\\\]):([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$') || self.matches('^tcp6://\\\\[[0-9a-fA-F:.]+\\\\]:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$') || self.matches('^unix:///[^\\\\x00]+$')",message="listen: must be tcp://HOST:PORT, tcp4://HOST:PORT, tcp6://[HOST]:PORT (port 1-65535) or unix:///absolute/path"
type ListenAddress string

// ReadinessType is how a new worker proves it is ready.
// +kubebuilder:validation:Enum=Notify;Delay
type ReadinessType string

const (
	// ReadinessNotify waits for the worker to send READY=1 to NOTIFY_SOCKET
	// (the sd_notify protocol).
	ReadinessNotify ReadinessType = "Notify"
	// ReadinessDelay counts a worker ready once it has stayed alive for
	// delaySeconds.
	ReadinessDelay ReadinessType = "Delay"
)

// Readiness is how a new worker proves it is ready to serve. A worker that
// exits first, or is not ready within timeoutSeconds, fails the reload.
//
// +kubebuilder:validation:XValidation:rule="self.type != 'Delay' || self.delaySeconds < self.timeoutSeconds",message="readiness: delaySeconds must be less than timeoutSeconds"
type Readiness struct {
	// type is Notify (the worker sends READY=1 to NOTIFY_SOCKET) or Delay
	// (the worker is ready once alive for delaySeconds).
	// +optional
	// +kubebuilder:default=Delay
	Type ReadinessType `json:"type,omitempty"`

	// delaySeconds is how long a worker must stay alive to count as ready,
	// for type Delay. 0 counts it ready as soon as it runs.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=600
	DelaySeconds *int32 `json:"delaySeconds,omitempty"`

	// timeoutSeconds is how long a new worker has to become ready.
	// +optional
	// +kubebuilder:default=60
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
}

// Signal is the name of a POSIX signal a worker can be asked to stop with.
// +kubebuilder:validation:Enum=SIGTERM;SIGINT;SIGQUIT;SIGHUP;SIGUSR1;SIGUSR2;SIGWINCH;SIGKILL
type Signal string

// ReplacementPolicy is the order in which a pod's workers are replaced.
// +kubebuilder:validation:Enum=SurgeFirst;StopFirst
type ReplacementPolicy string

const (
	// SurgeFirst starts the new worker, waits until it is ready, then stops
	// the old one. The group briefly runs count+maxSurge workers.
	SurgeFirst ReplacementPolicy = "SurgeFirst"
	// StopFirst stops the old worker, then starts the new one: never more
	// than count workers (Workerman's order).
	StopFirst ReplacementPolicy = "StopFirst"
)

// RollbackPolicy says what happens after a pod fails to reload.
// +kubebuilder:validation:Enum=Auto;Manual
type RollbackPolicy string

const (
	// RollbackAuto returns every pod that moved to the failed revision to
	// the last good one.
	RollbackAuto RollbackPolicy = "Auto"
	// RollbackManual holds the rollout until the spec or the code changes.
	RollbackManual RollbackPolicy = "Manual"
)

// PodReplacementPolicy says what the controller does with a pod that a
// revision cannot update in place: a pod whose group that is not reloadable
// changed, or one that kubectl softreload replace-pods asks to replace.
// +kubebuilder:validation:Enum=Hold;Evict
type PodReplacementPolicy string

const (
	// PodReplacementHold leaves such pods running what they run and names
	// them in the PodsOutdated condition; they change when their workload
	// replaces them, or on request (the ReplacePodsAtAnnotation).
	PodReplacementHold PodReplacementPolicy = "Hold"
	// PodReplacementEvict evicts such pods through the Eviction API, which
	// honours their PodDisruptionBudgets, at most maxUnavailable at a time,
	// and waits until the pods that replace them report the revision ready
	// before it evicts more. Their workload (a Deployment, a StatefulSet,
	// ...) must make the new pods.
	PodReplacementEvict PodReplacementPolicy = "Evict"
)

// RolloutStrategy says how a revision rolls out.
type RolloutStrategy struct {
	// maxUnavailable is how many pods may reload at once: a number, or a
	// percentage of the selected pods (rounded down, at least one).
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == string ? self.matches('^(100|[1-9][0-9]?)%$') : self > 0",message="maxUnavailable: must be a number above 0 or a percentage from 1% to 100%"
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// replacement is the order in which a pod's workers are replaced:
	// SurgeFirst (start new, wait ready, stop old) or StopFirst.
	// +optional
	// +kubebuilder:default=SurgeFirst
	Replacement ReplacementPolicy `json:"replacement,omitempty"`

	// maxSurge is how many workers of a group are replaced at once inside a
	// pod.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=256
	MaxSurge int32 `json:"maxSurge,omitempty"`

	// progressDeadlineSeconds is how long a rollout may go without progress
	// before the pool is marked Degraded (ProgressDeadlineExceeded).
	// +optional
	// +kubebuilder:default=600
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=86400
	ProgressDeadlineSeconds int32 `json:"progressDeadlineSeconds,omitempty"`

	// rollback is Auto (pods that moved to a failed revision go back to the
	// last good one) or Manual (the rollout holds until the next change).
	// +optional
	// +kubebuilder:default=Auto
	Rollback RollbackPolicy `json:"rollback,omitempty"`

	// podReplacement is what happens to a pod that a revision cannot update
	// in place because a group that is not reloadable changed (its command,
	// args, env, count, listen, readiness or stop settings, or its removal):
	// Hold (keep the pod and name it in the PodsOutdated condition) or Evict
	// (replace it through the Eviction API within maxUnavailable, honouring
	// PodDisruptionBudgets).
	// +optional
	// +kubebuilder:default=Hold
	PodReplacement PodReplacementPolicy `json:"podReplacement,omitempty"`
}

// WorkerPoolStatus is what the controller observes of the pool.
type WorkerPoolStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// currentRevision is the newest revision that every selected pod runs.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	CurrentRevision string `json:"currentRevision,omitempty"`

	// updateRevision is the revision being rolled out.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	UpdateRevision string `json:"updateRevision,omitempty"`

	// pods is how many pods the pool governs: those its selector matches
	// that are labelled softreload.dev/pool with its name.
	// +optional
	Pods int32 `json:"pods"`

	// updatedPods is how many pods run updateRevision.
	// +optional
	UpdatedPods int32 `json:"updatedPods"`

	// readyPods is how many pods report all their workers ready.
	// +optional
	ReadyPods int32 `json:"readyPods"`

	// reloadingPods is how many pods are reloading now.
	// +optional
	ReloadingPods int32 `json:"reloadingPods"`

	// failedPods is how many pods report a failed reload.
	// +optional
	FailedPods int32 `json:"failedPods"`

	// outdatedPods is how many pods run updateRevision with every worker
	// ready while a group that is not reloadable keeps an older spec in
	// them: only a new pod runs it at updateRevision's. They do not count as
	// updated; the PodsOutdated condition names them.
	// +optional
	OutdatedPods int32 `json:"outdatedPods"`

	// evictions are the pods evicted to be replaced in the replacement
	// under way, oldest first: each holds a slot of maxUnavailable until a
	// pod created after it reports updateRevision ready, and is kept until
	// no pod is left to replace.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	Evictions []PodEviction `json:"evictions,omitempty"`

	// history lists recent revisions, newest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	History []RevisionRecord `json:"history,omitempty"`

	// conditions: Available, Progressing, Degraded, SelectorOverlap and
	// PodsOutdated.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// PodEviction is one pod the controller evicted to replace it.
type PodEviction struct {
	// pod is the name of the evicted pod.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Pod string `json:"pod"`

	// evictedAt is when the Eviction API accepted the eviction.
	// +required
	EvictedAt metav1.Time `json:"evictedAt"`
}

// RevisionRecord is one revision in the pool's history.
type RevisionRecord struct {
	// revision is the content hash that names the revision.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Revision string `json:"revision"`

	// cause is why the revision was made: CodeChanged, SpecChanged,
	// Restart or Rollback.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Cause string `json:"cause,omitempty"`

	// source describes the code: the ConfigMap and its resourceVersion, or
	// the image reference.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Source string `json:"source,omitempty"`

	// createdAt is when the revision was first seen.
	// +optional
	CreatedAt metav1.Time `json:"createdAt,omitempty"`

	// completedAt is when every pod ran the revision, if ever.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// result is Complete, Failed, RolledBack or Superseded, once known.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Result string `json:"result,omitempty"`
}

// WorkerPool declares worker groups inside running pods and rolls new
// revisions of their code across the pods by reloading the workers in place,
// without restarting the pods.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=wp,categories=softreload
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.status.currentRevision`
// +kubebuilder:printcolumn:name="Updated",type=integer,JSONPath=`.status.updatedPods`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyPods`
// +kubebuilder:printcolumn:name="Pods",type=integer,JSONPath=`.status.pods`
// +kubebuilder:printcolumn:name="Available",type=string,JSONPath=`.status.conditions[?(@.type=="Available")].status`
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Update-Revision",type=string,JSONPath=`.status.updateRevision`,priority=1
// +kubebuilder:printcolumn:name="Reloading",type=integer,JSONPath=`.status.reloadingPods`,priority=1
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.failedPods`,priority=1
// +kubebuilder:printcolumn:name="Outdated",type=integer,JSONPath=`.status.outdatedPods`,priority=1
// +kubebuilder:printcolumn:name="Progressing",type=string,JSONPath=`.status.conditions[?(@.type=="Progressing")].reason`,priority=1
type WorkerPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the pool.
	// +required
	Spec WorkerPoolSpec `json:"spec"`

	// status is the observed state of the pool.
	// +optional
	Status WorkerPoolStatus `json:"status,omitempty"`
}

// WorkerPoolList is a list of WorkerPools.
//
// +kubebuilder:object:root=true
type WorkerPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WorkerPool `json:"items"`
}
