// Package metrics exposes the agent's Prometheus metrics: reloads by result,
// reload duration, worker restarts, and workers by group, state and
// revision. It implements supervisor.Recorder.
package metrics
