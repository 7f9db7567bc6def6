// Package plugin is kubectl softreload, the kubectl plugin for WorkerPools:
// status reads a pool and the agent reports of its pods, history lists its
// revisions and which of them can still be rolled back to, and reload,
// pause, resume and rollback ask the controller for something by writing
// the pool (an annotation or spec.paused), never the pods.
//
// NewCommand builds the whole command tree with kubectl's standard flags
// (--kubeconfig, --context, -n, ...) and the IO streams it is given, so a
// test runs exactly what a user runs, against a real API server.
package plugin
