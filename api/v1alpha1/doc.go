// Package v1alpha1 holds the WorkerPool API (group workers.softreload.dev):
// the worker groups that run inside the selected pods, where their code comes
// from, and how a new revision is rolled across the pods. It also holds the
// contract between the controller and the agent in each pod: the annotation
// keys and the status report an agent publishes.
//
// +kubebuilder:object:generate=true
// +groupName=workers.softreload.dev
package v1alpha1
