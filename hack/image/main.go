// Command image builds softreload's container images without a container
// engine: each image is one static Go binary (CGO_ENABLED=0) in one layer
// on an empty base, run as the non-root user 65532, for one or more linux
// platforms. Each image is written as an OCI image layout in a tar archive
// (dir/<name>.tar), which containerd (`ctr images import`, by the
// io.containerd.image.name annotation) and skopeo (`oci-archive:`) read.
//
//	go run ./hack/image -out dist -registry ghcr.io/softreload -tag 0.1.0 \
//		manager=./cmd/manager agent=./cmd/agent
//
// builds ./cmd/manager into dist/manager.tar as ghcr.io/softreload/manager:0.1.0
// with the entrypoint /manager, and the same for the agent. The Dockerfile
// at the root of the repository builds the same images with Docker.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
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

// User is the user and group the images run as: distroless's "nonroot".
const User = "65532:65532"

// Annotation keys of the image layout's index.json that name the image.
const (
	// RefNameAnnotation is the OCI annotation for the reference's tag.
	RefNameAnnotation = oci.RefNameAnnotation
	// ContainerdNameAnnotation is the full reference containerd imports
	// the image as.
	ContainerdNameAnnotation = oci.ContainerdNameAnnotation
)

// Image says what to build.
type Image struct {
	// Name is the image's name: its repository under the registry, its
	// binary (/Name, the entrypoint) and its archive (Name.tar).
	Name string
	// Package is the Go main package to build, as go build takes it.
	Package string
}

// Options say how to build.
type Options struct {
	// Dir is where go build runs (the module's directory); "" is the
	// current directory.
	Dir string
	// Out is the directory the archives are written to.
	Out string
	// Registry is the repository prefix, e.g. ghcr.io/softreload.
	Registry string
	// Tag is the images' tag.
	Tag string
	// Platforms are the linux platforms to build for, e.g. linux/amd64.
	Platforms []v1.Platform
	// Created is the images' creation time; the zero value means the Unix
	// epoch, so that the same binaries make the same image digests.
	Created time.Time
}

func main() {
	var (
		opts      Options
		platforms string
	)
	flag.StringVar(&opts.Out, "out", "dist", "directory to write <name>.tar into")
	flag.StringVar(&opts.Registry, "registry", "ghcr.io/softreload", "repository prefix of the images")
	flag.StringVar(&opts.Tag, "tag", "latest", "tag of the images")
	flag.StringVar(&platforms, "platforms", defaultPlatforms(), "comma-separated platforms to build for")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] name=./cmd/pkg...\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(opts, platforms, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(opts Options, platforms string, args []string) error {
	if len(args) == 0 {
		return errors.New("name at least one image to build, as name=./cmd/pkg")
	}
	var err error
	if opts.Platforms, err = ParsePlatforms(platforms); err != nil {
		return err
	}
	ctx := context.Background()
	for _, arg := range args {
		name, pkg, ok := strings.Cut(arg, "=")
		if !ok || name == "" || pkg == "" {
			return fmt.Errorf("%q is not name=./cmd/pkg", arg)
		}
		archive, err := Build(ctx, Image{Name: name, Package: pkg}, opts)
		if err != nil {
			return err
		}
		fmt.Printf("%s: %s:%s\n", archive, path.Join(opts.Registry, name), opts.Tag)
	}
	return nil
}

// defaultPlatforms is linux/amd64 and the host's architecture.
func defaultPlatforms() string {
	p := []string{"linux/amd64"}
	if runtime.GOARCH != "amd64" {
		p = append(p, "linux/"+runtime.GOARCH)
	}
	return strings.Join(p, ",")
}

// ParsePlatforms parses "linux/amd64,linux/arm64". Only linux platforms
// are images' platforms here; duplicates are dropped.
func ParsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, field := range strings.Split(s, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(field))
		if err != nil {
			return nil, err
		}
		if p.OS != "linux" || p.Architecture == "" {
			return nil, fmt.Errorf("platform %q: only linux/<arch> images are built", field)
		}
		if !slices.ContainsFunc(out, func(q v1.Platform) bool { return q.Equals(*p) }) {
			out = append(out, *p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no platform to build for")
	}
	return out, nil
}

// Build builds img for every platform of opts and writes the image index
// as an OCI image layout into opts.Out/<name>.tar, returning its path.
func Build(ctx context.Context, img Image, opts Options) (string, error) {
	if len(opts.Platforms) == 0 {
		return "", errors.New("no platform to build for")
	}
	scratch, err := os.MkdirTemp("", "softreload-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)

	created := opts.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range opts.Platforms {
		bin := filepath.Join(scratch, "bin", p.Architecture+p.Variant, img.Name)
		if err := goBuild(ctx, opts.Dir, img.Package, p, bin); err != nil {
			return "", err
		}
		image, err := platformImage(img.Name, bin, p, created)
		if err != nil {
			return "", fmt.Errorf("image %s for %s: %w", img.Name, p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        image,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}

	ref := path.Join(opts.Registry, img.Name) + ":" + opts.Tag
	archive := filepath.Join(opts.Out, img.Name+".tar")
	if err := oci.WriteArchive(idx, ref, opts.Tag, archive, created); err != nil {
		return "", err
	}
	return archive, nil
}

// goBuild builds a static binary of pkg for platform p.
func goBuild(ctx context.Context, dir, pkg string, p v1.Platform, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" && p.Variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = os.Stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, p, err, stderr.String())
	}
	return nil
}

// platformImage is the image of one platform: an empty base, one layer
// with /etc/passwd, /etc/group, /tmp and the binary at /<name>, and a
// config that runs the binary as User.
func platformImage(name, bin string, p v1.Platform, created time.Time) (v1.Image, error) {
	layer, err := binaryLayer(name, bin, created)
	if err != nil {
		return nil, err
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	image, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "hack/image: " + name, Comment: "static binary"},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := image.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = v1.Time{Time: created}
	cfg.OS, cfg.Architecture, cfg.Variant = p.OS, p.Architecture, p.Variant
	cfg.Config = v1.Config{
		Entrypoint: []string{"/" + name},
		User:       User,
		WorkingDir: "/",
		Env:        []string{"PATH=/"},
		Labels: map[string]string{
			"org.opencontainers.image.title":  "softreload-" + name,
			"org.opencontainers.image.source": "https://github.com/softreload/softreload",
		},
	}
	return mutate.ConfigFile(image, cfg)
}

// binaryLayer is the tar of the layer. Every entry is owned by root and
// dated created, so the same binary makes the same layer.
func binaryLayer(name, bin string, created time.Time) (v1.Layer, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	return oci.Layer([]oci.Entry{
		{Name: "etc/", Mode: 0o755},
		{Name: "etc/passwd", Mode: 0o644, Body: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Name: "etc/group", Mode: 0o644, Body: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{Name: "home/", Mode: 0o755},
		{Name: "home/nonroot/", Mode: 0o700, UID: 65532, GID: 65532},
		{Name: "tmp/", Mode: 0o1777},
		{Name: name, Mode: 0o755, Body: data},
	}, created)
}
