// Package poolrevision names and stores the revisions of a WorkerPool. A
// revision is a content hash of everything a reload changes: the code files
// (a ConfigMap's data and binaryData) or the code image, the groups, how
// workers are replaced, and the pool's restart stamp. Each revision is
// snapshotted into an immutable ConfigMap named <pool>-<revision>, owned by
// the pool, which an agent reads to run exactly that revision; Prune keeps
// the snapshots to the pool's revisionHistoryLimit.
//
// The agent's copies of a code directory on disk are agent/codedir's.
package poolrevision
