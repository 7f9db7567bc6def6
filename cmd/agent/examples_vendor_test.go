package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-cmp/cmp"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var _ = Describe("the examples", func() {
	// The PHP, Node and Python examples carry their language's worker
	// library, unchanged, where Composer, npm and Python would find it. The
	// agent runs a snapshot of the code directory and refuses a link that
	// leaves it, so the library must be a copy inside it; this keeps that
	// copy the library of sdk/.
	DescribeTable("vendor their language's worker library unchanged",
		func(sdk string, runtime []string, vendored string) {
			root, err := filepath.Abs("../..")
			Expect(err).NotTo(HaveOccurred())
			want := map[string]string{}
			for _, p := range runtime { // files, or directories taken whole
				readTree(filepath.Join(root, sdk), p, want)
			}
			got := map[string]string{}
			readTree(filepath.Join(root, vendored), ".", got)
			diff := cmp.Diff(want, got)
			Expect(diff).To(BeEmpty(), "%s is not a copy of %s's %v (-want +got):\n%s\ncopy them: rm -r %[1]s && mkdir -p %[1]s && (cd %[2]s && cp -r %[5]s ../../%[1]s/)",
				vendored, sdk, runtime, diff, strings.Join(runtime, " "))
		},
		Entry("php", "sdk/php", []string{"autoload.php", "composer.json", "src"}, "examples/php/vendor/softreload/worker"),
		Entry("node", "sdk/node", []string{"index.js", "package.json"}, "examples/node/node_modules/@softreload/worker"),
		Entry("python", "sdk/python/softreload_worker", []string{"__init__.py"}, "examples/python/softreload_worker"),
		Entry("python gateway", "sdk/python/softreload_worker", []string{"__init__.py"}, "examples/gateway/softreload_worker"),
	)

	// The walkthrough's app (examples/kubernetes/app) holds sdk/python's
	// library unchanged, as the one file softreload_worker.py: its code
	// ConfigMap holds files, not directories, so the package's __init__.py
	// goes in flat.
	It("give the walkthrough's app sdk/python's library, flat", func() {
		want, err := os.ReadFile("../../sdk/python/softreload_worker/__init__.py")
		Expect(err).NotTo(HaveOccurred())
		got, err := os.ReadFile("../../examples/kubernetes/app/softreload_worker.py")
		Expect(err).NotTo(HaveOccurred())
		Expect(string(got) == string(want)).To(BeTrue(),
			"examples/kubernetes/app/softreload_worker.py is not a copy of sdk/python/softreload_worker/__init__.py: "+
				"cp sdk/python/softreload_worker/__init__.py examples/kubernetes/app/softreload_worker.py")
	})

	// The walkthrough runs examples/gateway's gateway and business code, so
	// that what the gateway suite tests is what the walkthrough deploys.
	DescribeTable("give the walkthrough's app the gateway example's code",
		func(name string) {
			want, err := os.ReadFile("../../examples/gateway/" + name)
			Expect(err).NotTo(HaveOccurred())
			got, err := os.ReadFile("../../examples/kubernetes/app/" + name)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(got) == string(want)).To(BeTrue(),
				"examples/kubernetes/app/%[1]s is not a copy of examples/gateway/%[1]s: cp examples/gateway/%[1]s examples/kubernetes/app/", name)
		},
		Entry(nil, "gateway.py"),
		Entry(nil, "business.py"),
	)
})

// readTree reads the file, or every file under the directory, at rel in
// dir into files, by path relative to dir.
func readTree(dir, rel string, files map[string]string) {
	GinkgoHelper()
	err := filepath.WalkDir(filepath.Join(dir, rel), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		name, err := filepath.Rel(dir, path)
		files[name] = string(b)
		return err
	})
	Expect(err).NotTo(HaveOccurred(), "reading %s", filepath.Join(dir, rel))
}
