package codedir

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// hashLen is how many hex digits of the content hash name a revision.
const hashLen = 12

// atomicData is the symlink to the current payload of a directory that the
// kubelet writes atomically (a mounted ConfigMap, Secret or projected
// volume): its files are links into ..data, itself a link to a timestamped
// directory "..2026_12_02_10_00_00.123456789" that changes with each update.
const atomicData = "..data"

// attempts is how many times Snapshot reads a code directory whose files
// vanish while it reads them (a mounted ConfigMap whose old payload the
// kubelet removes) before it gives up.
const attempts = 3

// Hash returns the content hash of the directory src: every directory's
// path and mode, and every regular file's path, mode and content. A
// symlink counts as what it points to, which must be inside src (see walk).
// Directories named in skip (e.g. a state directory inside src) are left
// out.
func Hash(src string, skip ...string) (string, error) {
	h := newHasher()
	if err := walk(src, skip, func(e entry) error {
		if e.info.IsDir() {
			h.dir(e.rel, e.info.Mode())
			return nil
		}
		f, err := os.Open(e.path)
		if err != nil {
			return err
		}
		defer f.Close()
		return h.file(e.rel, e.info.Mode(), f)
	}); err != nil {
		return "", err
	}
	return h.sum(), nil
}

// Holds reports whether the directory dir holds the code of src: every
// directory of src with its mode, and every regular file with its mode and
// content, at the same paths. dir may hold more: what the workers that run
// there wrote (Python's __pycache__, say) is not a change of the code. The
// error names the first difference.
func Holds(dir, src string) error {
	return walk(src, nil, func(e entry) error {
		path := filepath.Join(dir, filepath.FromSlash(e.rel))
		info, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s is missing", e.rel)
		}
		if err != nil {
			return err
		}
		if info.Mode() != e.info.Mode() {
			return fmt.Errorf("%s has mode %v, not %v", e.rel, info.Mode(), e.info.Mode())
		}
		if e.info.IsDir() {
			return nil
		}
		want, err := os.ReadFile(e.path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s has other content", e.rel)
		}
		return nil
	})
}

// hasher accumulates the content hash of a revision.
type hasher struct{ h hash.Hash }

func newHasher() *hasher { return &hasher{h: sha256.New()} }

func (x *hasher) dir(rel string, mode fs.FileMode) {
	fmt.Fprintf(x.h, "D %q %o\n", rel, mode.Perm())
}

// file adds a file, reading its content from r.
func (x *hasher) file(rel string, mode fs.FileMode, r io.Reader) error {
	content := sha256.New()
	if _, err := io.Copy(content, r); err != nil {
		return err
	}
	fmt.Fprintf(x.h, "F %q %o %x\n", rel, mode.Perm(), content.Sum(nil))
	return nil
}

func (x *hasher) sum() string { return hex.EncodeToString(x.h.Sum(nil))[:hashLen] }

// entry is a directory or a regular file of a code directory, as a revision
// holds it.
type entry struct {
	rel  string      // its path in the code directory, slash-separated
	path string      // where to read it, every symlink resolved
	info fs.FileInfo // what path names
}

// walk calls fn for every directory and regular file under src (not src
// itself), parents first, in lexical order, skipping the directories in
// skip. It follows symlinks: a link is walked as what it points to, under
// its own name, so a revision holds files, never links. A link that leaves
// src, dangles or leads back to one of its own parent directories is an
// error naming the link and its target. In a directory the kubelet writes
// atomically (it holds a ..data link), the payload ..data points to is
// walked instead, read once: its files once each, never a mix of two
// updates, and none of the kubelet's ..data and ..TIMESTAMP entries.
// Sockets, devices and fifos are not code and are left out.
func walk(src string, skip []string, fn func(entry) error) error {
	root, err := filepath.Abs(src)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return err
	}
	w := &walker{src: src, root: root, fn: fn}
	for _, s := range skip {
		if abs, err := filepath.Abs(s); err == nil {
			if real, err := filepath.EvalSymlinks(abs); err == nil {
				abs = real
			}
			w.skip = append(w.skip, abs)
		}
	}
	return w.dir(root, "", []string{root})
}

type walker struct {
	src, root string
	skip      []string
	fn        func(entry) error
}

// dir walks the directory path, whose path in the code directory is rel;
// parents are the real paths of the directories above it and itself.
func (w *walker) dir(path, rel string, parents []string) error {
	entries, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	for _, d := range entries {
		if d.Name() == atomicData && d.Type()&fs.ModeSymlink != 0 {
			payload, err := w.resolve(filepath.Join(path, d.Name()), joinRel(rel, d.Name()))
			if err != nil {
				return err
			}
			if entries, err = os.ReadDir(payload); err != nil {
				return err
			}
			path = payload
			break
		}
	}
	for _, d := range entries {
		name := d.Name()
		p, r := filepath.Join(path, name), joinRel(rel, name)
		if d.Type()&fs.ModeSymlink != 0 {
			if p, err = w.resolve(p, r); err != nil {
				return err
			}
		}
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			if slices.Contains(w.skip, p) {
				continue
			}
			if slices.Contains(parents, p) {
				return fmt.Errorf("symlink %s points to %s, one of its own parent directories: a loop", r, w.target(filepath.Join(path, name)))
			}
			if err := w.fn(entry{rel: r, path: p, info: info}); err != nil {
				return err
			}
			if err := w.dir(p, r, append(slices.Clip(parents), p)); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := w.fn(entry{rel: r, path: p, info: info}); err != nil {
				return err
			}
		}
	}
	return nil
}

// resolve returns the real path of the symlink link (rel in the code
// directory), which must lead to something inside the code directory.
func (w *walker) resolve(link, rel string) (string, error) {
	target := w.target(link)
	real, err := filepath.EvalSymlinks(link)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("symlink %s points to %s, which does not exist", rel, target)
	case err != nil:
		return "", fmt.Errorf("symlink %s (to %s): %w", rel, target, err)
	}
	if inside, err := filepath.Rel(w.root, real); err != nil || inside == ".." || strings.HasPrefix(inside, "../") {
		return "", fmt.Errorf("symlink %s points to %s, outside the code directory %s: a revision holds only the code directory's own files (copy the file in, or make the code directory one that holds both)", rel, target, w.src)
	}
	return real, nil
}

// target is what the symlink link says, for messages.
func (w *walker) target(link string) string {
	t, err := os.Readlink(link)
	if err != nil {
		return "?"
	}
	return t
}

func joinRel(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// Snapshot makes the revision of src: it returns its name and the
// directory, stateDir/NAME, that holds a copy of src. A revision already
// snapshotted is reused as it is. A stateDir inside src is not part of the
// code. The copy holds regular files and directories only: a symlink in
// src is copied as what it points to (see walk). The name is the hash of
// what was copied, so that a file changed during the copy cannot give the
// snapshot another revision's name.
func Snapshot(src, stateDir string) (rev, dir string, err error) {
	for i := 1; ; i++ {
		rev, dir, err = snapshot(src, stateDir)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || i == attempts {
			return rev, dir, err
		}
	}
}

func snapshot(src, stateDir string) (rev, dir string, err error) {
	rev, err = Hash(src, stateDir)
	if err != nil {
		return "", "", fmt.Errorf("hashing the code in %s: %w", src, err)
	}
	if dir, ok := reuse(stateDir, rev); ok {
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
	if rev, err = copyTree(src, tmp, stateDir); err != nil {
		return "", "", fmt.Errorf("copying the code in %s: %w", src, err)
	}
	if dir, ok := reuse(stateDir, rev); ok {
		return rev, dir, nil
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", "", err
	}
	dir = filepath.Join(stateDir, rev)
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return rev, dir, nil // made meanwhile by another snapshot
		}
		return "", "", err
	}
	return rev, dir, nil
}

// reuse returns the snapshot of rev if there is one, marked the newest for
// Prune.
func reuse(stateDir, rev string) (string, bool) {
	dir := filepath.Join(stateDir, rev)
	if _, err := os.Stat(dir); err != nil {
		return "", false
	}
	now := timeNow()
	_ = os.Chtimes(dir, now, now)
	return dir, true
}

// Copy copies the code of src into dst, an existing empty directory, as a
// snapshot holds it (files and directories only, symlinks followed by the
// rules of walk), and returns the hash of what it copied.
func Copy(src, dst string) (string, error) { return copyTree(src, dst, "") }

// copyTree copies the code of src into dst, a new directory, and returns
// the hash of what it copied.
func copyTree(src, dst, skip string) (string, error) {
	h := newHasher()
	err := walk(src, []string{skip}, func(e entry) error {
		to := filepath.Join(dst, filepath.FromSlash(e.rel))
		if e.info.IsDir() {
			h.dir(e.rel, e.info.Mode())
			return os.Mkdir(to, e.info.Mode().Perm()|0o700)
		}
		return copyFile(e.path, to, e.info.Mode(), func(r io.Reader) error { return h.file(e.rel, e.info.Mode(), r) })
	})
	if err != nil {
		return "", err
	}
	return h.sum(), nil
}

// copyFile copies from to a new file to, passing what it copies to hash.
func copyFile(from, to string, mode fs.FileMode, hash func(io.Reader) error) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm())
	if err != nil {
		return err
	}
	if err := hash(io.TeeReader(in, out)); err != nil {
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
