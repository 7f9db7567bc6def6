// Package rollout decides, from the pods of a WorkerPool and their agents'
// reports, which pods to tell which revision next. Plan is a pure function:
// pods, reports and the pool's settings in, actions out. It keeps no state;
// everything it needs is in the pods' annotations and the pool's status, so
// a restarted controller plans exactly what the one before it would have.
//
// The budget: a pod is in flight from the moment its desired revision
// differs from what its agent last settled on (Ready or Failed for that
// revision) until its agent settles. At most maxUnavailable pods are in flight;
// re-targeting a pod already in flight costs nothing, moving a settled pod
// costs one slot. A pod with no desired revision at all (created without the
// webhook) serves nothing yet: it is given one at once and counts against the
// budget from then on.
package rollout
