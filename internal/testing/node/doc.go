// Package node stands up a real one-node Kubernetes cluster on this
// machine for the real-node test (test/realnode): etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, containerd and runc, a kubelet
// and kube-proxy in iptables mode, with certificates made here.
//
// Everything runs in a network namespace and a mount namespace that Main
// creates, so every address the cluster and the test use lives there, no
// traffic leaves it, and nothing it mounts reaches the host. The node's
// address is held by an empty bridge; the pods hang off a CNI bridge.
// Main also leaves the host as it found it, on failure and on Ctrl-C too:
// it stops every leftover process by PID, removes the cgroups the kubelet
// and containerd made and puts back the sysctls the kubelet sets.
package node
