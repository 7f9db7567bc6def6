package pod_test

import (
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/agent/pod"
)

// filesUnder reads every file under dir, by slash-separated relative path.
func filesUnder(dir string) map[string][]byte {
	got := map[string][]byte{}
	Expect(filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		got[filepath.ToSlash(rel)], err = os.ReadFile(path)
		return err
	})).To(Succeed())
	return got
}

// names lists the entries of dir, or none if it does not exist.
func names(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

var _ = Describe("WriteRevision", func() {
	It("writes a revision's files into a directory of its own, once", func() {
		root := GinkgoT().TempDir()
		files := map[string][]byte{"app.py": []byte("print('v1')\n"), "static/index.html": []byte("<p>v1</p>")}
		dir, err := pod.WriteRevision(root, "abc123", files)
		Expect(err).NotTo(HaveOccurred())
		Expect(dir).To(Equal(filepath.Join(root, "revisions", "abc123")))
		Expect(filesUnder(dir)).To(Equal(files), "files on disk")

		By("writing it again, which leaves the first files: a revision is immutable")
		again, err := pod.WriteRevision(root, "abc123", map[string][]byte{"app.py": []byte("changed")})
		Expect(err).NotTo(HaveOccurred(), "second write")
		Expect(again).To(Equal(dir))
		Expect(readFile(filepath.Join(dir, "app.py"))).To(Equal("print('v1')\n"), "a second write changed a written revision")
		Expect(names(filepath.Join(root, "revisions"))).To(Equal([]string{"abc123"}), "left behind more than the revision")
	})

	var root string
	BeforeEach(func() { root = GinkgoT().TempDir() })
	DescribeTable("refuses bad names, leaving nothing behind",
		func(rev string, files map[string][]byte, want string) {
			_, err := pod.WriteRevision(root, rev, files)
			Expect(err).To(MatchError(ContainSubstring(want)))
			Expect(names(filepath.Join(root, "revisions"))).To(BeEmpty(), "a refused revision left files behind")
		},
		Entry("escaping file", "r1", map[string][]byte{"../evil": nil}, `invalid file name "../evil"`),
		Entry("absolute file", "r2", map[string][]byte{"/etc/passwd": nil}, `invalid file name "/etc/passwd"`),
		Entry("slash revision", "a/b", nil, `invalid revision name "a/b"`),
	)
})

var _ = Describe("PruneRevisions", func() {
	It("keeps the revisions in use and the newest others", func() {
		root := GinkgoT().TempDir()
		now := time.Now()
		for i, rev := range []string{"r1", "r2", "r3", "r4", "r5"} {
			dir, err := pod.WriteRevision(root, rev, map[string][]byte{"f": nil})
			Expect(err).NotTo(HaveOccurred())
			at := now.Add(time.Duration(i) * time.Minute)
			Expect(os.Chtimes(dir, at, at)).To(Succeed())
		}
		// r1 runs (a non-reloadable group), r5 is current: with it, the
		// two newest stay.
		Expect(pod.PruneRevisions(root, 2, "r1", "r5")).To(Succeed())
		Expect(names(filepath.Join(root, "revisions"))).To(Equal([]string{"r1", "r4", "r5"}), "revisions left")
	})

	It("has nothing to do before any revision was written", func() {
		Expect(pod.PruneRevisions(GinkgoT().TempDir(), 2)).To(Succeed())
	})
})

var _ = Describe("CopyTree", func() {
	var from, to string
	BeforeEach(func() {
		from = GinkgoT().TempDir()
		Expect(os.MkdirAll(filepath.Join(from, "lib"), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(from, "lib", "x.php"), []byte("<?php"), 0o644)).To(Succeed())
		to = filepath.Join(GinkgoT().TempDir(), "images", "abc")
		Expect(pod.CopyTree(from, to)).To(Succeed())
	})

	It("copies a tree, and the same code again (its container restarted)", func() {
		Expect(readFile(filepath.Join(to, "lib", "x.php"))).To(Equal("<?php"))
		Expect(pod.CopyTree(from, to)).To(Succeed(), "delivering the same code again")
	})

	// Workers run in the delivered directory, and Python writes
	// __pycache__ next to what it imports: the image delivered again after
	// a restart of its container (a rollback to it) is still its code.
	It("takes the same code again beside what its workers wrote there", func() {
		Expect(os.MkdirAll(filepath.Join(to, "lib", "__pycache__"), 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(to, "lib", "__pycache__", "x.cpython-311.pyc"), []byte("bytecode"), 0o644)).To(Succeed())
		Expect(pod.CopyTree(from, to)).To(Succeed(), "delivering the same code again")
	})

	It("refuses a missing directory", func() {
		Expect(pod.CopyTree(filepath.Join(from, "missing"), filepath.Join(GinkgoT().TempDir(), "x"))).NotTo(Succeed())
	})

	DescribeTable("refuses other code where code was, and what was there stays",
		func(change func(from string) error) {
			other := GinkgoT().TempDir()
			Expect(os.CopyFS(other, os.DirFS(to))).To(Succeed())
			Expect(change(other)).To(Succeed())
			Expect(pod.CopyTree(other, to)).To(MatchError(ContainSubstring("already holds other code")), "delivering other code into %s", to)
			Expect(readFile(filepath.Join(to, "lib", "x.php"))).To(Equal("<?php"), "the delivered file changed")
		},
		Entry("a changed file", func(from string) error {
			return os.WriteFile(filepath.Join(from, "lib", "x.php"), []byte("<?php echo 2;"), 0o644)
		}),
		Entry("a new file", func(from string) error {
			return os.WriteFile(filepath.Join(from, "y.php"), []byte("<?php"), 0o644)
		}),
		Entry("a runnable file", func(from string) error {
			return os.Chmod(filepath.Join(from, "lib", "x.php"), 0o755)
		}),
	)

	// A code image's symlinks are delivered as what they point to, and one
	// that leaves the code is refused, as in every revision.
	It("delivers links inside the code as what they point to", func() {
		from := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(from, "real.py"), []byte("v1"), 0o644)).To(Succeed())
		Expect(os.Symlink("real.py", filepath.Join(from, "link.py"))).To(Succeed())
		to := filepath.Join(GinkgoT().TempDir(), "images", "abc")
		Expect(pod.CopyTree(from, to)).To(Succeed())
		info, err := os.Lstat(filepath.Join(to, "link.py"))
		Expect(err).NotTo(HaveOccurred())
		Expect(info.Mode().IsRegular()).To(BeTrue(), "link.py delivered as %v, want a regular file", info.Mode())
		Expect(readFile(filepath.Join(to, "link.py"))).To(Equal("v1"))

		By("refusing a link out of the code")
		outside := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644)).To(Succeed())
		Expect(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(from, "escape"))).To(Succeed())
		Expect(pod.CopyTree(from, filepath.Join(GinkgoT().TempDir(), "x"))).To(MatchError(ContainSubstring("escape")))
	})
})
