// Package suite runs every Ginkgo suite of the project the same way: the
// specs that need a control plane carry the ControlPlane label, go test
// -short leaves them out (so the pure specs run in seconds with no
// kube-apiserver), and the control plane a suite needs is started once, in
// its BeforeSuite, and stopped in its AfterSuite.
package suite
