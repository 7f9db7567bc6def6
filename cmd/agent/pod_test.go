package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("agent install", func() {
	// What the injected init container runs: the agent copies itself,
	// runnable.
	It("copies the agent, runnable, where it is told", func() {
		dest := filepath.Join(GinkgoT().TempDir(), "bin", "agent")
		out, err := exec.Command(agentBin, "install", dest).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "agent install:\n%s", out)
		out, err = exec.Command(dest, "--help").CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "the installed agent does not run:\n%s", out)
		Expect(string(out)).To(ContainSubstring("reload them one at a time"), "the installed agent's help")
		want, err := os.ReadFile(agentBin)
		Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile(dest)
		Expect(err).NotTo(HaveOccurred())
		// Compared as bytes: a failing Equal would print two binaries.
		Expect(bytes.Equal(got, want)).To(BeTrue(), "the installed agent differs from the agent")
	})
})

var _ = Describe("agent pod", func() {
	// Outside a pod, it says what it misses.
	It("refuses to start without its pod's name, naming POD_NAME", func() {
		kubeconfig := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)).To(Succeed())
		cmd := exec.Command(agentBin, "pod", "--kubeconfig", kubeconfig)
		cmd.Env = append(os.Environ(), "POD_NAME=", "POD_NAMESPACE=", "SOFTRELOAD_POOL=", "SOFTRELOAD_CODE_ROOT=")
		out, err := cmd.CombinedOutput()
		Expect(err).To(HaveOccurred(), "agent pod without its pod's name started:\n%s", out)
		Expect(string(out)).To(ContainSubstring("POD_NAMESPACE and POD_NAME must be set"))
	})
})

var _ = Describe("the production agent", func() {
	// The local mode's listen host and port offset stay out of the
	// production agent: only the agent built with the softreload_local tag
	// reads them.
	It("has no local mode", func() {
		bin, err := os.ReadFile(agentBin)
		Expect(err).NotTo(HaveOccurred())
		for _, name := range []string{"SOFTRELOAD_LISTEN_HOST", "SOFTRELOAD_PORT_OFFSET"} {
			Expect(bytes.Contains(bin, []byte(name))).To(BeFalse(), "the agent built without the softreload_local tag reads %s", name)
		}
	})
})
