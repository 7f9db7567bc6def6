package revision_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/softreload/softreload/agent/revision"
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

	rev1, dir1, err := revision.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir1, "lib", "util.php")); string(got) != "<?php" {
		t.Errorf("snapshot lacks lib/util.php: %q", got)
	}
	if target, _ := os.Readlink(filepath.Join(dir1, "index.php")); target != "app.php" {
		t.Errorf("symlink copied as %q", target)
	}

	// Unchanged code is the same revision, reused.
	rev, dir, err := revision.Snapshot(src, state)
	if err != nil || rev != rev1 || dir != dir1 {
		t.Errorf("snapshot of unchanged code = %s %s %v, want %s %s", rev, dir, err, rev1, dir1)
	}

	// Changed code is a new revision; the old snapshot keeps the old files.
	write(t, filepath.Join(src, "app.php"), "<?php echo 2;")
	rev2, dir2, err := revision.Snapshot(src, state)
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

	// A mode change is a change too (an executable bit).
	if err := os.Chmod(filepath.Join(src, "app.php"), 0o755); err != nil {
		t.Fatal(err)
	}
	if rev3, err := revision.Hash(src); err != nil || rev3 == rev2 {
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
	if err := revision.Prune(state, 2, "a"); err != nil {
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
	rev1, dir, err := revision.Snapshot(src, state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".softreload")); !os.IsNotExist(err) {
		t.Errorf("the snapshot holds the state directory: %v", err)
	}
	// The snapshot just made does not change the revision.
	rev2, _, err := revision.Snapshot(src, state)
	if err != nil || rev2 != rev1 {
		t.Errorf("second snapshot = %s, %v; want %s", rev2, err, rev1)
	}
}
