// Package controllers holds softreload's reconcilers. WorkerPoolReconciler
// makes a revision of each WorkerPool's code and groups, snapshots it, and
// rolls it over the selected pods through their annotations (the pod
// protocol), within the pool's budget, with rollback and status; the
// decisions themselves live in internal/rollout and internal/poolrevision.
// AgentAccessReconciler keeps each namespace's agent rights in step.
package controllers
