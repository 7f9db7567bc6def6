// Package metrics exposes the agent's Prometheus metrics: reloads by result,
// reload duration, worker restarts, how long stopped workers took to drain
// and how many were killed, and workers by group, state and revision, with
// the Go runtime's and the process's. It implements supervisor.Recorder.
package metrics
