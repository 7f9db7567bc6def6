//go:build realnode

// Package realnode runs softreload on a real one-node cluster (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd and
// runc, a kubelet, kube-proxy) that the test stands up on this machine, in
// network and mount namespaces of its own (internal/testing/node). It
// installs softreload as the README says (helm install, then
// examples/kubernetes) and, under continuous load on every pod, rolls code
// out in ConfigMap and image mode. make test-node builds what it needs and
// runs it as root.
package realnode

import (
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/softreload/softreload/internal/testing/node"
)

// TestMain runs the suite inside namespaces of its own and leaves the host
// as it found it.
func TestMain(m *testing.M) { os.Exit(node.Main(m)) }

func TestRealNode(t *testing.T) {
	RegisterFailHandler(Fail)
	ctrllog.SetLogger(GinkgoLogr)
	RunSpecs(t, "softreload on a real node")
}
