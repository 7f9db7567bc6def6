package nodeimage

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/softreload/softreload/hack/image/oci"
	"github.com/softreload/softreload/internal/testing/envtest"
)

func TestNodeImage(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "nodeimage")
}

var _ = Describe("the Python image's root filesystem", func() {
	It("merges /bin, /sbin, /lib and /lib64 into /usr and puts python3 and a shell on PATH", func() {
		staging := GinkgoT().TempDir()
		write := func(name, body string) {
			p := filepath.Join(staging, name)
			Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
			Expect(os.WriteFile(p, []byte(body), 0o755)).To(Succeed())
		}
		write("usr/bin/python3.11", "python")
		write("bin/busybox", "busybox")
		write("lib/x86_64-linux-gnu/libc.so.6", "libc")
		write("usr/share/doc/libc6/copyright", "doc")
		Expect(os.MkdirAll(filepath.Join(staging, "lib64"), 0o755)).To(Succeed())
		Expect(os.Symlink("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", filepath.Join(staging, "lib64", "ld-linux-x86-64.so.2"))).To(Succeed())

		entries, err := rootfs(staging)
		Expect(err).NotTo(HaveOccurred())
		byName := map[string]oci.Entry{}
		var order []string
		for _, e := range entries {
			byName[e.Name] = e
			order = append(order, e.Name)
		}
		Expect(byName).To(HaveKey("usr/lib/x86_64-linux-gnu/libc.so.6"))
		Expect(byName).To(HaveKey("usr/bin/busybox"))
		Expect(byName).NotTo(HaveKey("lib/x86_64-linux-gnu/libc.so.6"))
		Expect(byName).NotTo(HaveKey("usr/share/doc/libc6/copyright"))
		Expect(byName["usr/lib64/ld-linux-x86-64.so.2"].Link).To(Equal("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"))
		for _, top := range mergedUsr {
			Expect(byName[top].Link).To(Equal("usr/"+top), "/%s", top)
		}
		Expect(byName["usr/bin/python3"].Link).To(Equal(pythonBinary))
		Expect(byName["usr/bin/sh"].Link).To(Equal("busybox"))
		Expect(byName["tmp/"].Mode).To(Equal(int64(0o1777)))
		Expect(order).To(BeEquivalentTo(sortedCopy(order)), "every directory before what it holds")
	})

	It("names the packages that hold no python3 or busybox", func() {
		_, err := rootfs(GinkgoT().TempDir())
		Expect(err).To(MatchError(ContainSubstring("hold no usr/bin/" + pythonBinary)))
	})
})

var _ = Describe("the code images", func() {
	It("hold the walkthrough's app under CodePath, each with its greeting, the broken one a failing worker", func() {
		root, err := envtest.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		out := GinkgoT().TempDir()
		Expect(BuildCode(root, out)).To(Succeed())
		for _, c := range Codes {
			files := codeFiles(filepath.Join(out, "code-"+c.Tag+".tar"))
			Expect(files).To(HaveKeyWithValue("code/greeting.txt", c.Greeting+"\n"), c.Ref())
			Expect(files).To(HaveKey("code/gateway.py"), c.Ref())
			if c.Broken {
				Expect(files).To(HaveKeyWithValue("code/worker.py", BrokenWorker), c.Ref())
			} else {
				Expect(files["code/worker.py"]).To(ContainSubstring("READY=1"), c.Ref())
			}
		}
	})
})

// codeFiles reads the files of the one layer of the image in archive, an
// OCI layout in a tar.
func codeFiles(archive string) map[string]string {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	f, err := os.Open(archive)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		p := filepath.Join(dir, hdr.Name)
		if hdr.Typeflag == tar.TypeDir {
			Expect(os.MkdirAll(p, 0o755)).To(Succeed())
			continue
		}
		Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
		b, err := io.ReadAll(tr)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(p, b, 0o644)).To(Succeed())
	}
	l, err := layoutImage(dir)
	Expect(err).NotTo(HaveOccurred())
	layers, err := l.Layers()
	Expect(err).NotTo(HaveOccurred())
	Expect(layers).To(HaveLen(1))
	rc, err := layers[0].Uncompressed()
	Expect(err).NotTo(HaveOccurred())
	defer rc.Close()
	files := map[string]string{}
	lr := tar.NewReader(rc)
	for {
		hdr, err := lr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		if hdr.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(lr)
			Expect(err).NotTo(HaveOccurred())
			files[hdr.Name] = string(b)
		}
	}
	return files
}

// layoutImage is the one image of the one index of the OCI layout in dir.
func layoutImage(dir string) (v1.Image, error) {
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	m, err := root.IndexManifest()
	if err != nil {
		return nil, err
	}
	idx, err := root.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, err
	}
	if m, err = idx.IndexManifest(); err != nil {
		return nil, err
	}
	return idx.Image(m.Manifests[0].Digest)
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
