package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestExamplesVendorTheLibraries checks that the PHP and Node examples carry
// their language's worker library, unchanged, where Composer and npm would
// install it. The agent runs a snapshot of the code directory and refuses a
// link that leaves it, so the library must be a copy inside it; this test
// keeps that copy the library of sdk/.
func TestExamplesVendorTheLibraries(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		sdk      string
		runtime  []string // what a worker loads: files, or directories taken whole
		vendored string
	}{
		"php":    {sdk: "sdk/php", runtime: []string{"autoload.php", "composer.json", "src"}, vendored: "examples/php/vendor/softreload/worker"},
		"node":   {sdk: "sdk/node", runtime: []string{"index.js", "package.json"}, vendored: "examples/node/node_modules/@softreload/worker"},
		"python": {sdk: "sdk/python/softreload_worker", runtime: []string{"__init__.py"}, vendored: "examples/python/softreload_worker"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			want := map[string]string{}
			for _, p := range tc.runtime {
				readTree(t, filepath.Join(root, tc.sdk), p, want)
			}
			got := map[string]string{}
			readTree(t, filepath.Join(root, tc.vendored), ".", got)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s is not a copy of %s's %v (-want +got):\n%s\ncopy them: rm -r %[1]s && mkdir -p %[1]s && (cd %[2]s && cp -r %[5]s ../../%[1]s/)",
					tc.vendored, tc.sdk, tc.runtime, diff, strings.Join(tc.runtime, " "))
			}
		})
	}
}

// TestWalkthroughCarriesThePythonLibrary checks that the walkthrough's app
// (examples/kubernetes/app) holds sdk/python's library unchanged, as the one
// file softreload_worker.py: its code ConfigMap holds files, not
// directories, so the package's __init__.py goes in flat.
func TestWalkthroughCarriesThePythonLibrary(t *testing.T) {
	const sdk, copied = "../../sdk/python/softreload_worker/__init__.py", "../../examples/kubernetes/app/softreload_worker.py"
	want, err := os.ReadFile(sdk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(copied)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("examples/kubernetes/app/softreload_worker.py is not a copy of sdk/python/softreload_worker/__init__.py: cp sdk/python/softreload_worker/__init__.py examples/kubernetes/app/softreload_worker.py")
	}
}

// readTree reads the file, or every file under the directory, at rel in
// dir into files, by path relative to dir.
func readTree(t *testing.T, dir, rel string, files map[string]string) {
	t.Helper()
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
	if err != nil {
		t.Fatalf("reading %s: %v", filepath.Join(dir, rel), err)
	}
}
