// Package chart tests what softreload's install manifests render: the Helm
// chart in charts/softreload with several value sets, the kustomize bases
// in config/, that the two agree with each other and with what
// controller-gen generates, and that a real API server accepts them.
package chart
