package pod

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/softreload/softreload/agent/codedir"
)

// WriteRevision writes files into root/revisions/rev and returns that
// directory. The directory appears whole or not at all: the files go into a
// temporary directory that is renamed into place. A directory that is there
// already is the same revision's and is used as it is: revisions are
// immutable.
func WriteRevision(root, rev string, files map[string][]byte) (string, error) {
	if rev == "" || strings.ContainsAny(rev, `/\`) || rev == "." || rev == ".." {
		return "", fmt.Errorf("invalid revision name %q", rev)
	}
	dir := filepath.Join(root, "revisions", rev)
	if _, err := os.Stat(dir); err == nil {
		now := time.Now()
		_ = os.Chtimes(dir, now, now) // the newest, for PruneRevisions
		return dir, nil
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+rev+"-")
	if err != nil {
		return "", fmt.Errorf("creating a directory for revision %s: %w", rev, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	for name, data := range files {
		if !fs.ValidPath(name) || name == "." {
			return "", fmt.Errorf("revision %s: invalid file name %q", rev, name)
		}
		path := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return "", fmt.Errorf("revision %s: %w", rev, err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return "", fmt.Errorf("revision %s: writing %s: %w", rev, name, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("revision %s: %w", rev, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(dir); statErr == nil {
			return dir, nil // written meanwhile by another writer
		}
		return "", fmt.Errorf("moving revision %s into place: %w", rev, err)
	}
	return dir, nil
}

// PruneRevisions removes the oldest revision directories under
// root/revisions beyond the newest limit, never one named in inUse: workers
// may still run code of a kept revision, never of a pruned one.
func PruneRevisions(root string, limit int, inUse ...string) error {
	err := codedir.Prune(filepath.Join(root, "revisions"), limit, inUse...)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// CopyTree copies the directory tree from into a new directory to, whole or
// not at all (a temporary directory renamed into place), as a revision
// holds code: files and directories, a symlink as what it points to, one
// that leaves from refused (agent/codedir). It is what the code container
// of image mode runs, each time it starts. A to that is there already must
// hold the same files (the same image delivered again, after a restart of
// its container), besides any its workers wrote there: one whose files
// differ is an error, never kept, since workers would run code that is not
// the image's.
func CopyTree(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(to), err)
	}
	tmp := fmt.Sprintf("%s.tmp-%s", to, randomSuffix())
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", tmp, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if _, err := codedir.Copy(from, tmp); err != nil {
		return fmt.Errorf("copying the code from %s: %w", from, err)
	}
	if _, err := os.Stat(to); err == nil {
		// The workers run in to and may have written there (Python's
		// __pycache__): the image's own files are what must be the same.
		if err := codedir.Holds(to, tmp); err != nil {
			return fmt.Errorf("%s already holds other code than %s of this image (%w): an image reference must always name the same content (was its tag pushed again? give the new code a new tag)", to, from, err)
		}
		return nil
	}
	if err := os.Rename(tmp, to); err != nil {
		return fmt.Errorf("moving the code into %s: %w", to, err)
	}
	return nil
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
