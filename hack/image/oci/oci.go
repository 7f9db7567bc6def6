// Package oci writes container images without a container engine: layers
// made of files, and an image (or image index) written as an OCI image
// layout in a tar archive, which containerd (`ctr images import`, by the
// io.containerd.image.name annotation) and skopeo (`oci-archive:`) read.
// hack/image builds softreload's images with it, and hack/nodeimage the
// images of the real-node test.
package oci

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotation keys of the image layout's index.json that name the image.
const (
	// RefNameAnnotation is the OCI annotation for the reference's tag.
	RefNameAnnotation = "org.opencontainers.image.ref.name"
	// ContainerdNameAnnotation is the full reference containerd imports
	// the image as.
	ContainerdNameAnnotation = "io.containerd.image.name"
)

// Entry is one file, directory or symbolic link of a layer.
type Entry struct {
	// Name is the path in the image, without a leading slash; a
	// directory's ends with a slash.
	Name string
	// Mode is the permission bits (and setuid, setgid, sticky).
	Mode int64
	// Body is a regular file's content.
	Body []byte
	// Link, if set, makes the entry a symbolic link to Link.
	Link string
	// UID and GID own the entry (root when zero).
	UID, GID int
}

// Layer is the layer holding entries, in their order. Every entry is dated
// created, so the same entries make the same layer.
func Layer(entries []Entry, created time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := tar.Header{
			Name: e.Name, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			ModTime: created, Format: tar.FormatPAX, Typeflag: tar.TypeReg,
		}
		switch {
		case e.Link != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Link
		case len(e.Name) > 0 && e.Name[len(e.Name)-1] == '/':
			hdr.Typeflag = tar.TypeDir
		default:
			hdr.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.Name, err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// WriteArchive writes idx, named ref (registry/repository:tag), as the only
// image of an OCI image layout into the tar archive out, atomically.
func WriteArchive(idx v1.ImageIndex, ref, tag, out string, created time.Time) error {
	scratch, err := os.MkdirTemp("", "softreload-oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	l, err := layout.Write(scratch, empty.Index)
	if err != nil {
		return err
	}
	if err := l.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		RefNameAnnotation:        tag,
		ContainerdNameAnnotation: ref,
	})); err != nil {
		return fmt.Errorf("writing the image layout of %s: %w", ref, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := tarDir(scratch, out, created); err != nil {
		return fmt.Errorf("archiving %s: %w", ref, err)
	}
	return nil
}

// tarDir writes the files under dir into the tar archive out, in a stable
// order and with stable times.
func tarDir(dir, out string, modTime time.Time) (err error) {
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	tw := tar.NewWriter(f)
	// WalkDir visits in lexical order.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Name: rel + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: modTime})
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: modTime}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
