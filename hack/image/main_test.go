package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// hello writes a module with a tiny main that prints its greeting, the
// stand-in for cmd/manager: the test must not depend on the binaries that
// other packages are still growing.
func hello(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "go.mod"), "module example.com/hello\n\ngo 1.26\n")
	write(t, filepath.Join(dir, "cmd", "hello", "main.go"), "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from the image\") }\n")
	return dir
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBuildWritesARunnableNonRootImagePerPlatform(t *testing.T) {
	platforms, err := ParsePlatforms("linux/amd64,linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	archive, err := Build(context.Background(), Image{Name: "hello", Package: "./cmd/hello"}, Options{
		Dir: hello(t), Out: out, Registry: "registry.example/softreload", Tag: "v9", Platforms: platforms,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(out, "hello.tar"); archive != want {
		t.Errorf("archive = %s, want %s", archive, want)
	}

	// Read the archive back as a container runtime would: untar the OCI
	// layout and follow index.json to each platform's image.
	dir := t.TempDir()
	untar(t, archive, dir)
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(topManifest.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(topManifest.Manifests))
	}
	desc := topManifest.Manifests[0]
	wantAnnotations := map[string]string{
		RefNameAnnotation:        "v9",
		ContainerdNameAnnotation: "registry.example/softreload/hello:v9",
	}
	if diff := cmp.Diff(wantAnnotations, desc.Annotations); diff != "" {
		t.Errorf("index.json annotations (-want +got):\n%s", diff)
	}
	if desc.MediaType != types.OCIImageIndex {
		t.Errorf("index.json points at a %s, want an OCI image index", desc.MediaType)
	}
	idx, err := top.ImageIndex(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range im.Manifests {
		if m.Platform == nil {
			t.Fatalf("manifest %s has no platform", m.Digest)
		}
		got = append(got, m.Platform.String())
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkImage(t, img, *m.Platform)
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, got); diff != "" {
		t.Errorf("platforms (-want +got):\n%s", diff)
	}
}

// checkImage checks what a pod relies on: the entrypoint, a non-root
// user, and a static binary of the right architecture at the entrypoint.
func checkImage(t *testing.T, img v1.Image, p v1.Platform) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OS != p.OS || cfg.Architecture != p.Architecture {
		t.Errorf("%s: config says %s/%s", p, cfg.OS, cfg.Architecture)
	}
	if diff := cmp.Diff([]string{"/hello"}, cfg.Config.Entrypoint); diff != "" {
		t.Errorf("%s: entrypoint (-want +got):\n%s", p, diff)
	}
	if cfg.Config.User != "65532:65532" {
		t.Errorf("%s: user = %q, want 65532:65532", p, cfg.Config.User)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	if mt != types.OCIManifestSchema1 {
		t.Errorf("%s: manifest media type %s, want OCI", p, mt)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%s: %d layers, want 1", p, len(layers))
	}
	files := layerFiles(t, layers[0])
	bin, ok := files["hello"]
	if !ok {
		t.Fatalf("%s: no /hello in the layer; it has %v", p, keys(files))
	}
	if bin.hdr.Mode&0o111 == 0 {
		t.Errorf("%s: /hello is not executable (mode %o)", p, bin.hdr.Mode)
	}
	if passwd := string(files["etc/passwd"].body); !bytes.Contains([]byte(passwd), []byte("nonroot:x:65532:65532:")) {
		t.Errorf("%s: /etc/passwd has no nonroot user 65532:\n%s", p, passwd)
	}
	if tmp, ok := files["tmp/"]; !ok || tmp.hdr.Mode&0o1777 != 0o1777 {
		t.Errorf("%s: /tmp missing or not world-writable and sticky", p)
	}

	f, err := elf.NewFile(bytes.NewReader(bin.body))
	if err != nil {
		t.Fatalf("%s: /hello is not an ELF binary: %v", p, err)
	}
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
	if f.Machine != wantMachine {
		t.Errorf("%s: /hello is built for %s", p, f.Machine)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("%s: /hello is dynamically linked; the image has no libc", p)
		}
	}
	if p.Architecture == runtime.GOARCH && runtime.GOOS == "linux" {
		path := filepath.Join(t.TempDir(), "hello")
		if err := os.WriteFile(path, bin.body, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(path).Output()
		if err != nil {
			t.Fatalf("running /hello from the layer: %v", err)
		}
		if string(out) != "hello from the image\n" {
			t.Errorf("/hello from the layer printed %q", out)
		}
	}
}

type file struct {
	hdr  *tar.Header
	body []byte
}

func layerFiles(t *testing.T, l v1.Layer) map[string]file {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = file{hdr: hdr, body: body}
	}
}

func keys(m map[string]file) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		write(t, target, string(data))
	}
}

func TestBuildIsReproducible(t *testing.T) {
	platforms, err := ParsePlatforms("linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	mod := hello(t)
	var archives [2][]byte
	for i := range archives {
		path, err := Build(context.Background(), Image{Name: "hello", Package: "./cmd/hello"}, Options{
			Dir: mod, Out: t.TempDir(), Registry: "r.example", Tag: "t", Platforms: platforms,
		})
		if err != nil {
			t.Fatal(err)
		}
		if archives[i], err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(archives[0], archives[1]) {
		t.Error("two builds of the same source made different archives")
	}
}

func TestParsePlatforms(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    []string
		wantErr bool
	}{
		"one":               {in: "linux/amd64", want: []string{"linux/amd64"}},
		"two, deduplicated": {in: "linux/amd64, linux/arm64,linux/amd64", want: []string{"linux/amd64", "linux/arm64"}},
		"variant":           {in: "linux/arm/v7", want: []string{"linux/arm/v7"}},
		"not linux":         {in: "windows/amd64", wantErr: true},
		"empty":             {in: "", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ps, err := ParsePlatforms(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunRefusesBadArguments(t *testing.T) {
	for name, tc := range map[string]struct {
		platforms string
		args      []string
	}{
		"no image":       {platforms: "linux/amd64"},
		"no package":     {platforms: "linux/amd64", args: []string{"manager"}},
		"empty name":     {platforms: "linux/amd64", args: []string{"=./cmd/manager"}},
		"not a platform": {platforms: "darwin/arm64", args: []string{"manager=./cmd/manager"}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := run(Options{Out: t.TempDir()}, tc.platforms, tc.args); err == nil {
				t.Error("run accepted it")
			}
		})
	}
}
