package revision

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// hashLen is how many hex digits of the content hash name a revision.
const hashLen = 12

// Hash returns the content hash of the directory src: every regular file's
// path, mode and content, and every symlink's target. Directories named in
// skip (absolute paths, e.g. a state directory inside src) are left out.
func Hash(src string, skip ...string) (string, error) {
	h := sha256.New()
	err := walk(src, skip, func(rel string, d fs.DirEntry, path string) error {
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "L %q %q\n", rel, target)
		case d.IsDir():
			fmt.Fprintf(h, "D %q %o\n", rel, info.Mode().Perm())
		case info.Mode().IsRegular():
			fmt.Fprintf(h, "F %q %o %d\n", rel, info.Mode().Perm(), info.Size())
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:hashLen], nil
}

// walk calls fn for everything under src but src itself and the
// directories in skip, in lexical order.
func walk(src string, skip []string, fn func(rel string, d fs.DirEntry, path string) error) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == src {
			return nil
		}
		for _, s := range skip {
			if d.IsDir() && filepath.Clean(s) == path {
				return filepath.SkipDir
			}
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		return fn(filepath.ToSlash(rel), d, path)
	})
}

// Snapshot makes the revision of src: it returns its name and the
// directory, stateDir/NAME, that holds a copy of src. A revision already
// snapshotted is reused as it is. A stateDir inside src is not part of the
// code.
func Snapshot(src, stateDir string) (rev, dir string, err error) {
	rev, err = Hash(src, stateDir)
	if err != nil {
		return "", "", fmt.Errorf("hashing the code in %s: %w", src, err)
	}
	dir = filepath.Join(stateDir, rev)
	if _, err := os.Stat(dir); err == nil {
		now := timeNow()
		_ = os.Chtimes(dir, now, now) // newest, for Prune
		return rev, dir, nil
	}
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return "", "", err
	}
	tmp, err := os.MkdirTemp(stateDir, ".tmp-"+rev+"-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	if err := copyTree(src, tmp, stateDir); err != nil {
		return "", "", fmt.Errorf("copying the code in %s: %w", src, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return rev, dir, nil // made meanwhile by another snapshot
		}
		return "", "", err
	}
	return rev, dir, nil
}

func copyTree(src, dst, skip string) error {
	return walk(src, []string{skip}, func(rel string, d fs.DirEntry, path string) error {
		to := filepath.Join(dst, filepath.FromSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.IsDir():
			return os.Mkdir(to, info.Mode().Perm()|0o700)
		case info.Mode().IsRegular():
			return copyFile(path, to, info.Mode().Perm())
		}
		return nil // sockets, devices, fifos are not code
	})
}

func copyFile(from, to string, perm fs.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Prune removes the oldest snapshots of stateDir beyond the newest keep,
// never one named in inUse.
func Prune(stateDir string, keep int, inUse ...string) error {
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return err
	}
	type snap struct {
		name string
		mod  int64
	}
	var snaps []snap
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		snaps = append(snaps, snap{e.Name(), info.ModTime().UnixNano()})
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].mod > snaps[j].mod })
	var errs []error
	for i, s := range snaps {
		if i < keep || contains(inUse, s.name) {
			continue
		}
		errs = append(errs, os.RemoveAll(filepath.Join(stateDir, s.name)))
	}
	return errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
