package pod_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/softreload/softreload/agent/pod"
)

func TestWriteRevision(t *testing.T) {
	root := t.TempDir()
	files := map[string][]byte{"app.py": []byte("print('v1')\n"), "static/index.html": []byte("<p>v1</p>")}
	dir, err := pod.WriteRevision(root, "abc123", files)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "revisions", "abc123"); dir != want {
		t.Errorf("directory %s, want %s", dir, want)
	}
	got := map[string][]byte{}
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		got[filepath.ToSlash(rel)], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(files, got); diff != "" {
		t.Errorf("files on disk (-want +got):\n%s", diff)
	}

	// A revision is immutable: writing it again leaves the first files.
	again, err := pod.WriteRevision(root, "abc123", map[string][]byte{"app.py": []byte("changed")})
	if err != nil || again != dir {
		t.Fatalf("second write: %s, %v", again, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "app.py")); string(b) != "print('v1')\n" {
		t.Errorf("a second write changed a written revision: %q", b)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "revisions"))
	if len(entries) != 1 {
		t.Errorf("left behind %d entries, want only the revision: %v", len(entries), entries)
	}
}

func TestWriteRevisionRefusesBadNames(t *testing.T) {
	root := t.TempDir()
	for name, tc := range map[string]struct {
		rev   string
		files map[string][]byte
		want  string
	}{
		"escaping file":  {"r1", map[string][]byte{"../evil": nil}, `invalid file name "../evil"`},
		"absolute file":  {"r2", map[string][]byte{"/etc/passwd": nil}, `invalid file name "/etc/passwd"`},
		"slash revision": {"a/b", nil, `invalid revision name "a/b"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := pod.WriteRevision(root, tc.rev, tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %s", err, tc.want)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "revisions")); len(entries) != 0 {
		t.Errorf("a refused revision left %v behind", entries)
	}
}

func TestPruneRevisions(t *testing.T) {
	root := t.TempDir()
	now := time.Now()
	for i, rev := range []string{"r1", "r2", "r3", "r4", "r5"} {
		dir, err := pod.WriteRevision(root, rev, map[string][]byte{"f": nil})
		if err != nil {
			t.Fatal(err)
		}
		at := now.Add(time.Duration(i) * time.Minute)
		if err := os.Chtimes(dir, at, at); err != nil {
			t.Fatal(err)
		}
	}
	// r1 runs (a non-reloadable group), r5 is current: with it, the two
	// newest stay.
	if err := pod.PruneRevisions(root, 2, "r1", "r5"); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "revisions"))
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff([]string{"r1", "r4", "r5"}, got); diff != "" {
		t.Errorf("revisions left (-want +got):\n%s", diff)
	}
	if err := pod.PruneRevisions(t.TempDir(), 2); err != nil {
		t.Errorf("pruning before any revision was written: %v", err)
	}
}

func TestCopyTree(t *testing.T) {
	from := t.TempDir()
	if err := os.MkdirAll(filepath.Join(from, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(from, "lib", "x.php"), []byte("<?php"), 0o644); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "images", "abc")
	if err := pod.CopyTree(from, to); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(to, "lib", "x.php")); err != nil || string(b) != "<?php" {
		t.Fatalf("copied file: %q, %v", b, err)
	}
	if err := pod.CopyTree(filepath.Join(from, "missing"), filepath.Join(t.TempDir(), "x")); err == nil {
		t.Errorf("copying a missing directory succeeded")
	}

	// The same code again (its container restarted) is fine; other code
	// where it was is an error, and what was there stays.
	if err := pod.CopyTree(from, to); err != nil {
		t.Errorf("delivering the same code again: %v", err)
	}
	for name, change := range map[string]func() error{
		"a changed file":  func() error { return os.WriteFile(filepath.Join(from, "lib", "x.php"), []byte("<?php echo 2;"), 0o644) },
		"a new file":      func() error { return os.WriteFile(filepath.Join(from, "y.php"), []byte("<?php"), 0o644) },
		"a runnable file": func() error { return os.Chmod(filepath.Join(from, "lib", "x.php"), 0o755) },
	} {
		t.Run(name, func(t *testing.T) {
			from = t.TempDir()
			if err := os.CopyFS(from, os.DirFS(to)); err != nil {
				t.Fatal(err)
			}
			if err := change(); err != nil {
				t.Fatal(err)
			}
			if err := pod.CopyTree(from, to); err == nil || !strings.Contains(err.Error(), "already holds other code") {
				t.Errorf("delivering other code into %s: %v, want an error", to, err)
			}
			if b, err := os.ReadFile(filepath.Join(to, "lib", "x.php")); err != nil || string(b) != "<?php" {
				t.Errorf("the delivered file now holds %q, %v", b, err)
			}
		})
	}
}

// A code image's symlinks are delivered as what they point to, and one that
// leaves the code is refused, as in every revision.
func TestCopyTreeFollowsLinksInside(t *testing.T) {
	from := t.TempDir()
	must(t, os.WriteFile(filepath.Join(from, "real.py"), []byte("v1"), 0o644))
	must(t, os.Symlink("real.py", filepath.Join(from, "link.py")))
	to := filepath.Join(t.TempDir(), "images", "abc")
	must(t, pod.CopyTree(from, to))
	info, err := os.Lstat(filepath.Join(to, "link.py"))
	if err != nil || !info.Mode().IsRegular() || readFile(t, filepath.Join(to, "link.py")) != "v1" {
		t.Errorf("link.py delivered as %v (%v), want a regular file holding v1", info, err)
	}

	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(from, "escape")))
	if err := pod.CopyTree(from, filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(err.Error(), "escape") {
		t.Errorf("a link out of the code was delivered: %v", err)
	}
}
