// Package codedir turns a code directory into an immutable revision: a
// content hash names it, and a snapshot under the state directory holds its
// files, written once (temporary directory, then rename) and never changed.
// Workers of a revision run from its snapshot, so editing the code directory
// never changes what runs, and a rollback runs exactly the old files.
//
// It is the agent's side of revisions, on the pod's disk; the controller's
// side, a WorkerPool's revisions and their snapshot ConfigMaps, is
// internal/poolrevision.
package codedir
