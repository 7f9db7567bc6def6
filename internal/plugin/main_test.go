package plugin_test

import (
	"bytes"
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/softreload/softreload/internal/plugin"
)

// What a user of the plugin sees of a run: the exit code kubectl-softreload
// exits with, and what it writes.
var _ = DescribeTable("The plugin's exit",
	func(args []string, code int, stdout, stderr string) {
		var out, errOut bytes.Buffer
		got := plugin.Main(context.Background(), genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut}, args)
		Expect(got).To(Equal(code), "exit code; stderr: %s", errOut.String())
		Expect(out.String()).To(Equal(stdout), "stdout")
		Expect(errOut.String()).To(Equal(stderr), "stderr")
	},
	Entry("is 0 on success", []string{"version"}, 0, "dev\n", ""),
	Entry("is 1 on an error, which it prints", []string{"status"}, 1, "",
		"error: a WorkerPool name is required; usage: kubectl softreload status POOL [flags]\n"),
	Entry("is 1 with an unreadable kubeconfig", []string{"status", "web", "--kubeconfig", "/nonexistent/kubeconfig"}, 1, "",
		"error: reading the namespace from the kubeconfig: stat /nonexistent/kubeconfig: no such file or directory\n"),
)
