// Package nodeimage builds the images the real-node test (test/realnode)
// runs besides softreload's own: a Python runtime for the walkthrough's
// app, made of Debian's packages, and code images of that app for image
// mode. No container engine and no registry are needed: each image is an
// OCI archive that `ctr images import` reads. hack/nodeimage is its
// command; the sandbox image is hack/nodeimage/pause, built by hack/image.
package nodeimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/softreload/softreload/hack/image/oci"
)

// The images' names, as the test's containerd knows them.
const (
	// Registry and Tag name the sandbox image hack/image builds from
	// hack/nodeimage/pause: Registry/pause:Tag.
	Registry = "localhost/softreload"
	Tag      = "test"
	// PauseRef is the sandbox image, containerd's sandbox_image.
	PauseRef = Registry + "/pause:" + Tag
	// PythonRef is the image examples/kubernetes/deployment.yaml names,
	// fully qualified as containerd stores it. It holds Debian's Python,
	// whatever its minor version, and Debian's websockets library: the
	// example needs python3 and, for its gateway, websockets.
	PythonRef = "docker.io/library/hello-python:1"
	// CodeRepo is the repository of the code images; CodeRef names each.
	CodeRepo = Registry + "/hello-code"
	// CodePath is the directory of a code image that holds the code.
	CodePath = "/code"
)

// Code is a code image of the walkthrough's app.
type Code struct {
	// Tag is the image's tag under CodeRepo.
	Tag string
	// Greeting is what its web workers answer with.
	Greeting string
	// Broken code's web worker exits at start.
	Broken bool
}

// Ref is the image's reference.
func (c Code) Ref() string { return CodeRepo + ":" + c.Tag }

// Codes are the code images: two that work and one whose worker fails.
var Codes = []Code{
	{Tag: "v1", Greeting: "Hello from code image v1"},
	{Tag: "v2", Greeting: "Hello from code image v2"},
	{Tag: "broken", Greeting: "Hello from code image v1", Broken: true},
}

// BrokenWorker is the web worker of broken code: it exits at start.
const BrokenWorker = "import sys\nsys.exit('this revision is broken on purpose')\n"

// PythonPackages are the Debian packages of the Python image: the
// interpreter and the libraries its standard library loads, the websockets
// library of the walkthrough's gateway (pure Python, in
// /usr/lib/python3/dist-packages, which Debian's python3.11 reads), a
// shell (busybox) for kubectl exec.
var PythonPackages = []string{
	"python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
	"libc6", "libexpat1", "zlib1g", "libssl3", "libffi8", "libbz2-1.0",
	"liblzma5", "libcrypt1", "libgcc-s1", "libuuid1", "libsqlite3-0",
	"media-types", "netbase", "busybox-static", "python3-websockets",
}

// pythonBinary is the interpreter PythonPackages install, linked as python3.
const pythonBinary = "python3.11"

// busyboxApplets are linked to busybox in the Python image.
var busyboxApplets = []string{"sh", "ls", "cat", "ps", "env", "sleep", "kill"}

// created dates every image, so the same input makes the same image.
var created = time.Unix(0, 0)

// BuildCode writes every code image into out (code-<tag>.tar), from the
// walkthrough's app under root (the repository).
func BuildCode(root, out string) error {
	app := filepath.Join(root, "examples", "kubernetes", "app")
	for _, c := range Codes {
		files := map[string][]byte{}
		for _, name := range []string{"worker.py", "softreload_worker.py", "gateway.py", "business.py"} {
			b, err := os.ReadFile(filepath.Join(app, name))
			if err != nil {
				return fmt.Errorf("code image %s: %w", c.Ref(), err)
			}
			files[name] = b
		}
		files["greeting.txt"] = []byte(c.Greeting + "\n")
		if c.Broken {
			files["worker.py"] = []byte(BrokenWorker)
		}
		dir := strings.TrimPrefix(CodePath, "/") + "/"
		entries := []oci.Entry{{Name: dir, Mode: 0o755}}
		for _, name := range slices.Sorted(maps.Keys(files)) {
			entries = append(entries, oci.Entry{Name: dir + name, Mode: 0o644, Body: files[name]})
		}
		if err := writeImage(entries, v1.Config{WorkingDir: CodePath}, c.Ref(), c.Tag, filepath.Join(out, "code-"+c.Tag+".tar")); err != nil {
			return err
		}
	}
	return nil
}

// BuildPython writes the Python image into out/python.tar. The packages
// are downloaded with apt-get download and the image is kept under cache
// (keyed by the package list), so a second build copies it.
func BuildPython(ctx context.Context, cache, out string) error {
	sum := sha256.Sum256([]byte(strings.Join(PythonPackages, " ") + " " + runtime.GOARCH))
	dir := filepath.Join(cache, "python-"+hex.EncodeToString(sum[:6]))
	cached := filepath.Join(dir, "python.tar")
	if _, err := os.Stat(cached); err != nil {
		if err := buildPython(ctx, dir, cached); err != nil {
			return fmt.Errorf("the Python image: %w", err)
		}
	}
	return copyFile(cached, filepath.Join(out, "python.tar"))
}

func buildPython(ctx context.Context, dir, archive string) error {
	debs := filepath.Join(dir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return err
	}
	have, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	if len(have) < len(PythonPackages) {
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, PythonPackages...)...)
		cmd.Dir = debs
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get download %s (run apt-get update first?): %w\n%s", strings.Join(PythonPackages, " "), err, b)
		}
	}
	staging, err := os.MkdirTemp(dir, "rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(staging)
	all, _ := filepath.Glob(filepath.Join(debs, "*.deb"))
	for _, deb := range all {
		if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, staging).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, b)
		}
	}
	entries, err := rootfs(staging)
	if err != nil {
		return err
	}
	cfg := v1.Config{
		Cmd:        []string{"python3"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8"},
		WorkingDir: "/",
	}
	ref := PythonRef
	return writeImage(entries, cfg, ref, ref[strings.LastIndex(ref, ":")+1:], archive)
}

// mergedUsr are the top-level directories that Debian 12 links into /usr.
var mergedUsr = []string{"bin", "sbin", "lib", "lib64"}

// rootfs is the layer of the packages extracted under staging, with a
// merged /usr (/bin, /sbin, /lib, /lib64 links into /usr), python3 and a
// shell on PATH, /tmp, and the users root and nonroot (65532).
func rootfs(staging string) ([]oci.Entry, error) {
	byName := map[string]oci.Entry{}
	err := filepath.WalkDir(staging, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == staging {
			return err
		}
		rel, err := filepath.Rel(staging, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if top, _, _ := strings.Cut(rel, "/"); slices.Contains(mergedUsr, top) {
			rel = "usr/" + rel
		}
		if strings.HasPrefix(rel, "usr/share/doc/") || strings.HasPrefix(rel, "usr/share/man/") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := oci.Entry{Name: rel, Mode: int64(info.Mode().Perm())}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case d.IsDir():
			e.Name += "/"
		default:
			if e.Body, err = os.ReadFile(p); err != nil {
				return err
			}
			e.Mode = int64(info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid))
		}
		byName[e.Name] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, ok := byName["usr/bin/"+pythonBinary]; !ok {
		return nil, fmt.Errorf("the packages %v hold no usr/bin/%s", PythonPackages, pythonBinary)
	}
	if _, ok := byName["usr/bin/busybox"]; !ok {
		return nil, fmt.Errorf("the packages %v hold no usr/bin/busybox", PythonPackages)
	}
	add := []oci.Entry{
		{Name: "usr/bin/python3", Link: pythonBinary},
		{Name: "tmp/", Mode: 0o1777},
		{Name: "root/", Mode: 0o700},
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/tmp:/bin/sh\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnonroot:x:65532:\n")},
	}
	for _, top := range mergedUsr {
		add = append(add, oci.Entry{Name: "usr/" + top + "/", Mode: 0o755}, oci.Entry{Name: top, Link: "usr/" + top})
	}
	for _, applet := range busyboxApplets {
		add = append(add, oci.Entry{Name: "usr/bin/" + applet, Link: "busybox"})
	}
	for _, e := range add {
		if _, ok := byName[e.Name]; !ok || e.Link != "" {
			byName[e.Name] = e
		}
	}
	// Sorted, every directory comes before what it holds.
	var entries []oci.Entry
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		entries = append(entries, byName[name])
	}
	return entries, nil
}

// writeImage writes a one-layer image of entries for the host's platform
// into archive, as ref.
func writeImage(entries []oci.Entry, cfg v1.Config, ref, tag, archive string) error {
	layer, err := oci.Layer(entries, created)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "internal/testing/nodeimage: " + path.Base(ref)},
	})
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	file, err := img.ConfigFile()
	if err != nil {
		return err
	}
	file = file.DeepCopy()
	file.Created = v1.Time{Time: created}
	file.OS, file.Architecture = "linux", runtime.GOARCH
	file.Config = cfg
	if img, err = mutate.ConfigFile(img, file); err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &platform}})
	return oci.WriteArchive(idx, ref, tag, archive, created)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
