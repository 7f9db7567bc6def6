// Package envtest is the one harness every test that needs an API server
// shares: a real kube-apiserver and etcd, built by hack/tools.sh from source
// at pinned versions, started through controller-runtime's envtest with the
// softreload CRDs installed.
package envtest
