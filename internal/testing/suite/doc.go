// Package suite runs every Ginkgo suite of the project the same way: the
// specs that need a control plane carry the ControlPlane label, go test
// -short leaves them out (so the pure specs run in seconds with no
// kube-apiserver). Package controlplane starts the control plane a suite
// needs, once, in its BeforeSuite.
package suite
