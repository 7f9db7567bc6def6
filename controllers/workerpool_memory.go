package controllers

import (
	"reflect"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
)

// The controller decides from the API objects alone, but remembers, per
// pool, a few things that spare it work or that its cache has not shown
// yet. None of it is needed to carry on after a restart: a new process
// starts from a cache that lists everything afresh.
//
//   - Expectations (as the ReplicaSet controller keeps them): the pods it
//     told a revision whose write its cache has not shown yet. Until the
//     cache shows it, the pod is planned as told that revision — in flight,
//     holding a slot of the budget — so that a reconcile that runs before
//     the watch catches up never moves more pods than the budget allows,
//     and never tells a pod the same revision twice. This replaces waiting
//     after each write until the cache showed it, which held a worker for
//     as long as the watch lagged.
//   - The pool as its last status write returned it, used while the cache
//     still shows the pool as it was before that write, so that a status is
//     never computed from a view older than the controller's own write.
//   - The revision each pool's code makes: the code ConfigMap's UID and
//     resourceVersion and the revision spec it was hashed with, so that an
//     agent's report does not re-read and re-hash unchanged code.
//   - Which service accounts the authorizer let read which snapshot, while
//     the agents' Role and RoleBinding are the same objects.
//   - The selected pods it does not govern, which its view of the cache
//     does not hold, as the API server last listed them.
//   - When the status was last written, so that a change of progress alone
//     is written at most once a second (progressWriteInterval).
type memory struct {
	mu    sync.Mutex
	pools map[types.NamespacedName]*poolMemory
}

// poolMemory is what the controller remembers of one pool.
type poolMemory struct {
	// expected are the pods told a revision, by UID, until the cache shows it.
	expected map[types.UID]expectedPod
	// written is the pool as the controller's last write of it returned it,
	// and writtenOver the resourceVersions that write and the ones just
	// before it replaced.
	written     *workersv1alpha1.WorkerPool
	writtenOver map[string]bool
	// code is the revision of the pool's code ConfigMap.
	code *codeRevision
	// readers are the service accounts the authorizer let read a revision's
	// snapshot, under the agents' Role and RoleBinding of accessVersion.
	readers       map[accessKey]bool
	accessVersion string
	// strays are the selected pods the pool does not govern, as last asked
	// (see podsOfOthers).
	strays *strays
	// statusWrittenAt is when the status was last written, and rolling
	// whether it says a rollout is in progress (see progressWait).
	statusWrittenAt time.Time
	rolling         bool
}

// expectedPod is a revision written to a pod, and the pod's resourceVersion
// after the write.
type expectedPod struct {
	revision, resourceVersion string
}

// codeRevision is the revision a code ConfigMap's version makes with a
// revision spec.
type codeRevision struct {
	uid             types.UID
	resourceVersion string
	spec            poolrevision.Spec
	target          string
	size            int
}

func newMemory() *memory {
	return &memory{pools: map[types.NamespacedName]*poolMemory{}}
}

// of returns the memory of pool, creating it. The caller holds m.mu.
func (m *memory) of(pool types.NamespacedName) *poolMemory {
	pm, ok := m.pools[pool]
	if !ok {
		pm = &poolMemory{expected: map[types.UID]expectedPod{}}
		m.pools[pool] = pm
	}
	return pm
}

// forget drops everything remembered of a pool that is gone.
func (m *memory) forget(pool types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.pools, pool)
}

// expect records that the pod of uid was told rev by a write that left it
// at resourceVersion.
func (m *memory) expect(pool types.NamespacedName, uid types.UID, resourceVersion, rev string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.of(pool).expected[uid] = expectedPod{revision: rev, resourceVersion: resourceVersion}
}

// applyExpectations sets, on the pods as the cache lists them, the desired
// revision of each write the cache does not show yet, and forgets the
// writes it shows and the pods no longer listed. The pods are the cache's:
// a pod it sets a revision on is replaced in pods by a copy.
func (m *memory) applyExpectations(pool types.NamespacedName, pods []*corev1.Pod) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm := m.of(pool)
	if len(pm.expected) == 0 {
		return
	}
	seen := make(map[types.UID]bool, len(pm.expected))
	for i, pod := range pods {
		exp, ok := pm.expected[pod.UID]
		if !ok {
			continue
		}
		seen[pod.UID] = true
		if shows(pod, exp) {
			delete(pm.expected, pod.UID)
			continue
		}
		annotations := make(map[string]string, len(pod.Annotations)+1)
		for k, v := range pod.Annotations {
			annotations[k] = v
		}
		annotations[workersv1alpha1.DesiredRevisionAnnotation] = exp.revision
		told := *pod // a shallow copy: only its annotations differ
		told.Annotations = annotations
		pods[i] = &told
	}
	for uid := range pm.expected {
		if !seen[uid] {
			delete(pm.expected, uid)
		}
	}
}

// shows says whether the cached pod is the version the write left, or a
// later one. Resource versions are etcd's revisions, which only grow; should
// one not be a number, the pod shows the write once it shows its revision.
func shows(cached *corev1.Pod, exp expectedPod) bool {
	if cached.ResourceVersion == exp.resourceVersion {
		return true
	}
	got, err1 := strconv.ParseUint(cached.ResourceVersion, 10, 64)
	want, err2 := strconv.ParseUint(exp.resourceVersion, 10, 64)
	if err1 != nil || err2 != nil {
		return cached.Annotations[workersv1alpha1.DesiredRevisionAnnotation] == exp.revision
	}
	return got >= want
}

// wrote records the pool as a write (of its status, or of its rollback
// annotation) returned it, over the resourceVersion it had before.
func (m *memory) wrote(pool *workersv1alpha1.WorkerPool, before string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm := m.of(types.NamespacedName{Namespace: pool.Namespace, Name: pool.Name})
	if pm.written == nil || pm.written.ResourceVersion != before {
		pm.writtenOver = map[string]bool{}
	}
	pm.written = pool.DeepCopy()
	pm.writtenOver[before] = true
}

// latest returns the pool to reconcile: the cached one, or the one the
// controller's last write returned while the cache still shows the pool
// from before that write.
func (m *memory) latest(cached *workersv1alpha1.WorkerPool) *workersv1alpha1.WorkerPool {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm, ok := m.pools[types.NamespacedName{Namespace: cached.Namespace, Name: cached.Name}]
	if !ok || pm.written == nil {
		return cached
	}
	if pm.writtenOver[cached.ResourceVersion] && cached.UID == pm.written.UID {
		return pm.written.DeepCopy()
	}
	pm.written, pm.writtenOver = nil, nil
	return cached
}

// codeRevisionOf returns the remembered revision of the pool's code, if the
// ConfigMap and the spec are those it was made from.
func (m *memory) codeRevisionOf(pool types.NamespacedName, uid types.UID, resourceVersion string, spec poolrevision.Spec) (codeRevision, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm, ok := m.pools[pool]
	if !ok || pm.code == nil {
		return codeRevision{}, false
	}
	c := pm.code
	if c.uid != uid || c.resourceVersion != resourceVersion || !reflect.DeepEqual(c.spec, spec) {
		return codeRevision{}, false
	}
	return *c, true
}

// rememberCode records the revision of the pool's code.
func (m *memory) rememberCode(pool types.NamespacedName, c codeRevision) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.of(pool).code = &c
}

// mayRead returns whether the authorizer let key read its snapshot under
// the agents' Role and RoleBinding of accessVersion, if it was asked.
func (m *memory) mayRead(pool types.NamespacedName, accessVersion string, key accessKey) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm, ok := m.pools[pool]
	return ok && pm.accessVersion == accessVersion && pm.readers[key]
}

// allowRead records that the authorizer let key read its snapshot under
// the agents' Role and RoleBinding of accessVersion.
func (m *memory) allowRead(pool types.NamespacedName, accessVersion string, key accessKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pm := m.of(pool)
	if pm.accessVersion != accessVersion || pm.readers == nil {
		pm.readers, pm.accessVersion = map[accessKey]bool{}, accessVersion
	}
	pm.readers[key] = true
}

// reports remembers the agents' reports as parsed, by their text: in a
// rollout most pods carry one of a few reports, and every reconcile reads
// them all.
var reports = &reportCache{m: map[string]*workersv1alpha1.AgentStatus{}}

// maxReports bounds reportCache; it starts afresh when full.
const maxReports = 4096

// reportCache is a bounded map from a report's text to the report.
type reportCache struct {
	mu sync.Mutex
	m  map[string]*workersv1alpha1.AgentStatus
}

// parse returns the report raw holds, nil when it holds none or an invalid
// one.
func (c *reportCache) parse(raw string) *workersv1alpha1.AgentStatus {
	if raw == "" {
		return nil
	}
	c.mu.Lock()
	st, ok := c.m[raw]
	c.mu.Unlock()
	if ok {
		return st
	}
	st, err := workersv1alpha1.ParseAgentStatus(raw)
	if err != nil {
		st = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxReports {
		c.m = make(map[string]*workersv1alpha1.AgentStatus, maxReports)
	}
	c.m[raw] = st
	return st
}
