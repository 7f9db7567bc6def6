package v1alpha1

// Keys of the revision snapshots that the controller writes and the agent
// reads, beside RevisionLabel and PoolNameLabel.
const (
	// SnapshotSpecAnnotation on a revision snapshot ConfigMap holds, as
	// JSON, everything of the revision that is not a code file: the groups,
	// how workers are replaced, the code image and the restart stamp. The
	// ConfigMap's data and binaryData are the code files themselves.
	SnapshotSpecAnnotation = "softreload.dev/spec"
)
