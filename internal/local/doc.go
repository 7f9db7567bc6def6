// Package local runs softreload on one machine, with no cluster: a real
// kube-apiserver and etcd (the envtest control plane that hack/ builds), the
// manager as a process, and agent "pods": Pod objects, each served by a real
// agent process that authenticates with its own pod-bound service-account
// token and binds its pool's tcp ports on 127.0.0.1 shifted by an offset of
// its own, the way each pod has an IP of its own. make demo and test/e2e run
// on it.
package local
