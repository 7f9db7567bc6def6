// Command nodeimage builds the images of the real-node test besides
// softreload's own (make images) and the sandbox image (hack/image of
// ./hack/nodeimage/pause): a Python runtime for the walkthrough's app, from
// Debian's packages (apt-get download and dpkg-deb, cached), and the code
// images of image mode. Each is an OCI archive in -out.
//
//	go run ./hack/nodeimage -out dist/node
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/softreload/softreload/internal/testing/nodeimage"
)

func main() {
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		cacheDir = os.TempDir()
	}
	out := flag.String("out", "dist/node", "directory to write the archives into")
	cache := flag.String("cache", filepath.Join(cacheDir, "softreload", "node-images"), "directory that keeps the Python image between builds")
	flag.Parse()
	if err := run(context.Background(), *out, *cache); err != nil {
		fmt.Fprintln(os.Stderr, "nodeimage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out, cache string) error {
	if err := nodeimage.BuildPython(ctx, cache, out); err != nil {
		return err
	}
	fmt.Printf("%s: %s\n", filepath.Join(out, "python.tar"), nodeimage.PythonRef)
	if err := nodeimage.BuildCode(".", out); err != nil {
		return err
	}
	for _, c := range nodeimage.Codes {
		fmt.Printf("%s: %s\n", filepath.Join(out, "code-"+c.Tag+".tar"), c.Ref())
	}
	return nil
}
