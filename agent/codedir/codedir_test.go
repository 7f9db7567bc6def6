package codedir_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/softreload/softreload/agent/codedir"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshot(t *testing.T) {
	src, state := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, "app.php"), "<?php echo 1;")
	write(t, filepath.Join(src, "lib", "util.php"), "<?php")
	if err := os.Symlink("app.php", filepath.Join(src, "index.php")); err != nil {
		t.Fatal(err)
	}

	rev1, dir1, err := codedir.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir1, "lib", "util.php")); string(got) != "<?php" {
		t.Errorf("snapshot lacks lib/util.php: %q", got)
	}
	// A symlink is copied as what it points to: the snapshot holds files.
	if info, err := os.Lstat(filepath.Join(dir1, "index.php")); err != nil || !info.Mode().IsRegular() {
		t.Errorf("the symlink index.php is not copied as a file: %v, %v", info, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir1, "index.php")); string(got) != "<?php echo 1;" {
		t.Errorf("snapshot of the symlink index.php: %q", got)
	}

	// Unchanged code is the same revision, reused.
	rev, dir, err := codedir.Snapshot(src, state)
	if err != nil || rev != rev1 || dir != dir1 {
		t.Errorf("snapshot of unchanged code = %s %s %v, want %s %s", rev, dir, err, rev1, dir1)
	}

	// Changed code is a new revision; the old snapshot keeps the old files.
	write(t, filepath.Join(src, "app.php"), "<?php echo 2;")
	rev2, dir2, err := codedir.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	if rev2 == rev1 {
		t.Fatal("changed code kept the same revision")
	}
	if got, _ := os.ReadFile(filepath.Join(dir1, "app.php")); string(got) != "<?php echo 1;" {
		t.Errorf("old snapshot changed: %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(dir2, "app.php")); string(got) != "<?php echo 2;" {
		t.Errorf("new snapshot: %q", got)
	}
	// What runs from the old snapshot does not follow the live file behind
	// the link.
	if got, _ := os.ReadFile(filepath.Join(dir1, "index.php")); string(got) != "<?php echo 1;" {
		t.Errorf("old snapshot's index.php changed with the file it linked to: %q", got)
	}

	// A mode change is a change too (an executable bit).
	if err := os.Chmod(filepath.Join(src, "app.php"), 0o755); err != nil {
		t.Fatal(err)
	}
	if rev3, err := codedir.Hash(src); err != nil || rev3 == rev2 {
		t.Errorf("hash after chmod = %s, %v; want a new revision", rev3, err)
	}
}

func TestPruneKeepsNewestAndInUse(t *testing.T) {
	state := t.TempDir()
	now := time.Now()
	for i, name := range []string{"a", "b", "c", "d"} {
		dir := filepath.Join(state, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		at := now.Add(time.Duration(i) * time.Minute) // d is the newest
		if err := os.Chtimes(dir, at, at); err != nil {
			t.Fatal(err)
		}
	}
	if err := codedir.Prune(state, 2, "a"); err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(state)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	if got := filepath.Join(left...); got != filepath.Join("a", "c", "d") {
		t.Errorf("after Prune(keep 2, in use a): %v, want [a c d]", left)
	}
}

func TestSnapshotLeavesOutAStateDirInsideTheCode(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "main.py"), "print(1)")
	state := filepath.Join(src, ".softreload")
	rev1, dir, err := codedir.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".softreload")); !os.IsNotExist(err) {
		t.Errorf("the snapshot holds the state directory: %v", err)
	}
	// The snapshot just made does not change the revision.
	rev2, _, err := codedir.Snapshot(src, state)
	if err != nil || rev2 != rev1 {
		t.Errorf("second snapshot = %s, %v; want %s", rev2, err, rev1)
	}
}

// A file edited behind a symlink is a new revision, and a relative link
// that climbs with ../ inside the code directory is copied whole.
func TestSnapshotFollowsSymlinks(t *testing.T) {
	src, state := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, "shared", "settings.py"), "DEBUG = False")
	write(t, filepath.Join(src, "shared", "lib", "util.py"), "def f(): pass")
	symlink(t, "../shared/settings.py", filepath.Join(src, "app", "settings.py"))
	symlink(t, "shared/lib", filepath.Join(src, "lib"))
	symlink(t, filepath.Join(src, "shared", "settings.py"), filepath.Join(src, "absolute.py"))

	rev1, dir1, err := codedir.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"app/settings.py": "DEBUG = False", "lib/util.py": "def f(): pass", "absolute.py": "DEBUG = False",
	} {
		assertFile(t, filepath.Join(dir1, filepath.FromSlash(name)), want)
	}
	if info, err := os.Lstat(filepath.Join(dir1, "lib")); err != nil || !info.IsDir() {
		t.Errorf("the symlink lib is not copied as a directory: %v, %v", info, err)
	}

	write(t, filepath.Join(src, "shared", "lib", "util.py"), "def f(): return 2")
	rev2, dir2, err := codedir.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	if rev2 == rev1 {
		t.Fatal("a file edited behind a symlink kept the same revision")
	}
	assertFile(t, filepath.Join(dir2, "lib", "util.py"), "def f(): return 2")
	assertFile(t, filepath.Join(dir1, "lib", "util.py"), "def f(): pass")
}

// A standalone agent pointed at a mounted ConfigMap: the kubelet writes
// each key as a symlink into ..data, a symlink to a timestamped directory
// it swaps on each update. The revision holds each file once, as a file,
// and only an update of the content makes a new one.
func TestSnapshotOfAMountedConfigMap(t *testing.T) {
	src, state := t.TempDir(), t.TempDir()
	mount := configMapVolume{t: t, dir: src}
	mount.update("2026_12_02_10_00_00.000000001", map[string]string{"worker.php": "<?php echo 1;", "conf/app.ini": "a=1"})

	rev1, dir1, err := codedir.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"conf/", "conf/app.ini", "worker.php"}, tree(t, dir1)); diff != "" {
		t.Errorf("snapshot of a mounted ConfigMap (-want +got):\n%s", diff)
	}
	assertFile(t, filepath.Join(dir1, "worker.php"), "<?php echo 1;")
	assertFile(t, filepath.Join(dir1, "conf", "app.ini"), "a=1")

	// The same content under another timestamp is the same revision.
	mount.update("2026_12_02_10_05_00.000000002", map[string]string{"worker.php": "<?php echo 1;", "conf/app.ini": "a=1"})
	if rev, _, err := codedir.Snapshot(src, state); err != nil || rev != rev1 {
		t.Errorf("the same ConfigMap written again: revision %s, %v; want %s", rev, err, rev1)
	}

	mount.update("2026_12_02_10_10_00.000000003", map[string]string{"worker.php": "<?php echo 2;", "conf/app.ini": "a=1"})
	rev2, dir2, err := codedir.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	if rev2 == rev1 {
		t.Fatal("an updated ConfigMap kept the same revision")
	}
	assertFile(t, filepath.Join(dir2, "worker.php"), "<?php echo 2;")
	assertFile(t, filepath.Join(dir1, "worker.php"), "<?php echo 1;")
}

// A symlink that leaves the code directory, dangles or loops is refused,
// with an error that names it and its target. OUT stands for the
// directory beside the code directory.
func TestSnapshotRefusesBadSymlinks(t *testing.T) {
	tests := map[string]struct {
		link, target string
		want         []string
	}{
		"absolute, outside":  {link: "key.txt", target: "OUT/secret.txt", want: []string{"symlink key.txt points to OUT/secret.txt, outside the code directory"}},
		"relative, outside":  {link: "lib/key.txt", target: "../../out/secret.txt", want: []string{"symlink lib/key.txt points to ../../out/secret.txt, outside the code directory"}},
		"dangling":           {link: "lib/gone.py", target: "../missing.py", want: []string{"symlink lib/gone.py points to ../missing.py, which does not exist"}},
		"to its own parent":  {link: "lib/again", target: "..", want: []string{"symlink lib/again points to .., one of its own parent directories"}},
		"to the code itself": {link: "self", target: ".", want: []string{"symlink self points to ., one of its own parent directories"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			src, out := filepath.Join(parent, "code"), filepath.Join(parent, "out")
			write(t, filepath.Join(out, "secret.txt"), "s3cr3t")
			write(t, filepath.Join(src, "lib", "util.py"), "pass")
			symlink(t, strings.ReplaceAll(tc.target, "OUT", out), filepath.Join(src, filepath.FromSlash(tc.link)))
			_, _, err := codedir.Snapshot(src, t.TempDir())
			if err == nil {
				t.Fatal("Snapshot accepted the symlink")
			}
			for _, want := range tc.want {
				if want = strings.ReplaceAll(want, "OUT", out); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func assertFile(t *testing.T, path, want string) {
	t.Helper()
	info, err := os.Lstat(path)
	if err != nil || !info.Mode().IsRegular() {
		t.Errorf("%s is not a regular file: %v, %v", path, info, err)
		return
	}
	if got, _ := os.ReadFile(path); string(got) != want {
		t.Errorf("%s holds %q, want %q", path, got, want)
	}
}

// tree lists what is under dir: directories with a trailing slash,
// symlinks with their target.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			rel += " -> " + target
		case d.IsDir():
			rel += "/"
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// configMapVolume writes a directory as the kubelet writes a ConfigMap
// volume: the files in a timestamped directory, ..data a symlink to it,
// swapped atomically on each update, and each top-level name a symlink
// into ..data.
type configMapVolume struct {
	t   *testing.T
	dir string
}

func (v configMapVolume) update(stamp string, files map[string]string) {
	v.t.Helper()
	payload := ".." + stamp
	for name, content := range files {
		write(v.t, filepath.Join(v.dir, payload, filepath.FromSlash(name)), content)
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	tmp := filepath.Join(v.dir, "..data_tmp")
	symlink(v.t, payload, tmp)
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	for name := range files {
		top, _, _ := strings.Cut(name, "/")
		link := filepath.Join(v.dir, top)
		if _, err := os.Lstat(link); err != nil {
			symlink(v.t, filepath.Join("..data", top), link)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			v.t.Fatal(err)
		}
	}
}
