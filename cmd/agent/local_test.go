//go:build softreload_local

package main

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/api/v1alpha1"
)

// localMode labels the specs of the local mode's agent, which build only
// with the softreload_local tag: make test runs them with
// go test -tags softreload_local -ginkgo.label-filter=local.
const localMode = "local"

var _ = Describe("the local mode's agent", Label(localMode), func() {
	// It moves the pool's tcp addresses to its own host and ports, and
	// leaves unix sockets alone.
	DescribeTable("rebinds the pool's addresses",
		func(in, want v1alpha1.ListenAddress) {
			GinkgoT().Setenv("SOFTRELOAD_LISTEN_HOST", "127.0.0.1")
			GinkgoT().Setenv("SOFTRELOAD_PORT_OFFSET", "100")
			rebind, err := rebindFromEnv()
			Expect(err).NotTo(HaveOccurred())
			Expect(rebind).NotTo(BeNil(), "no rebind with both variables set")
			Expect(rebind(in)).To(Equal(want))
		},
		Entry("a port on every address", v1alpha1.ListenAddress("tcp://:8080"), v1alpha1.ListenAddress("tcp://127.0.0.1:8180")),
		Entry("an unspecified IPv4 address", v1alpha1.ListenAddress("tcp://0.0.0.0:8080"), v1alpha1.ListenAddress("tcp://127.0.0.1:8180")),
		Entry("a unix socket, left alone", v1alpha1.ListenAddress("unix:///run/app.sock"), v1alpha1.ListenAddress("unix:///run/app.sock")),
		Entry("an IPv6 address", v1alpha1.ListenAddress("tcp://[::1]:9000"), v1alpha1.ListenAddress("tcp://127.0.0.1:9100")),
		Entry("the highest port", v1alpha1.ListenAddress("tcp://127.0.0.1:65435"), v1alpha1.ListenAddress("tcp://127.0.0.1:65535")),
	)

	// Pods on one machine share its file system: a unix socket's path goes
	// under the pod's own directory, made if missing.
	It("puts unix sockets under SOFTRELOAD_SOCKET_ROOT", func() {
		root := GinkgoT().TempDir()
		GinkgoT().Setenv("SOFTRELOAD_SOCKET_ROOT", root)
		rebind, err := rebindFromEnv()
		Expect(err).NotTo(HaveOccurred())
		Expect(rebind).NotTo(BeNil(), "no rebind with SOFTRELOAD_SOCKET_ROOT set")
		Expect(rebind("unix:///tmp/app.sock")).To(Equal(v1alpha1.ListenAddress("unix://" + root + "/tmp/app.sock")))
		Expect(root + "/tmp").To(BeADirectory())
		GinkgoT().Setenv("SOFTRELOAD_SOCKET_ROOT", "sockets")
		_, err = rebindFromEnv()
		Expect(err).To(MatchError(ContainSubstring(`SOFTRELOAD_SOCKET_ROOT="sockets": want an absolute directory`)))
	})

	It("refuses a port that the offset moves above 65535", func() {
		GinkgoT().Setenv("SOFTRELOAD_LISTEN_HOST", "127.0.0.1")
		GinkgoT().Setenv("SOFTRELOAD_PORT_OFFSET", "100")
		rebind, err := rebindFromEnv()
		Expect(err).NotTo(HaveOccurred())
		Expect(rebind).NotTo(BeNil(), "no rebind with both variables set")
		_, err = rebind("tcp://:65436")
		Expect(err).To(MatchError(ContainSubstring("above 65535")))
	})

	// Without the variables nothing moves; a bad offset is refused, naming
	// it.
	It("rebinds nothing without its variables, and refuses a bad offset", func() {
		GinkgoT().Setenv("SOFTRELOAD_LISTEN_HOST", "")
		GinkgoT().Setenv("SOFTRELOAD_PORT_OFFSET", "")
		GinkgoT().Setenv("SOFTRELOAD_SOCKET_ROOT", "")
		rebind, err := rebindFromEnv()
		Expect(err).NotTo(HaveOccurred())
		Expect(rebind).To(BeNil(), "a rebind with neither variable set")
		GinkgoT().Setenv("SOFTRELOAD_PORT_OFFSET", "lots")
		_, err = rebindFromEnv()
		Expect(err).To(MatchError(ContainSubstring(`SOFTRELOAD_PORT_OFFSET="lots"`)))
	})
})
