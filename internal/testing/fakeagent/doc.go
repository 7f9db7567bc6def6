// Package fakeagent answers for the agents of pods that have none: pod
// objects on a real API server, without a kubelet. It watches the pods of
// a namespace and, when a pod is told a revision (its desired-revision
// annotation), reports in the pod's status annotation what the agent in
// that pod would: Ready (or Failed, or nothing, as a test chooses), after
// Reloading if the reload lasts ReloadingReportDelay. The controllers' envtest suite and the controller benchmark use
// it; the reports are api/v1alpha1's AgentStatus, read back with
// ParseAgentStatus, as the controller reads them.
//
// From the same watch it records what each pod was told, and the most pods
// in flight at once, in all and per pool (the value of a pod's
// softreload.dev/pool label), the figure the rollout budget bounds.
package fakeagent
