package plugin_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// The plugin against an API server without the WorkerPool CRD: a user who
// installed the plugin but not the operator.
var _ = Describe("Without softreload installed", Ordered, Label(suite.ControlPlane), func() {
	var kc string
	BeforeAll(func() {
		root, err := envtest.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		assets, err := envtest.Assets(root)
		Expect(err).NotTo(HaveOccurred())
		bare := &crenvtest.Environment{BinaryAssetsDirectory: assets}
		_, err = bare.Start()
		Expect(err).NotTo(HaveOccurred(), "starting a control plane without the CRDs")
		DeferCleanup(func() { Expect(bare.Stop()).To(Succeed(), "stopping the control plane without the CRDs") })
		kc = adminKubeconfig(bare)
	})

	DescribeTable("every command says that the WorkerPool API is not served",
		func(args ...string) {
			r := kubectlSoftreloadWith(kc, nil, args...)
			Expect(r.err).To(MatchError(ContainSubstring(
				"the WorkerPool API (workers.softreload.dev/v1alpha1) is not served by this cluster: is softreload installed?")),
				"%v without the WorkerPool API", args)
		},
		Entry(nil, "status", "web"),
		Entry(nil, "history", "web"),
		Entry(nil, "reload", "web"),
		Entry(nil, "pause", "web"),
		Entry(nil, "rollback", "web"),
	)
})
