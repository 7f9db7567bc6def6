package plugin_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/softreload/softreload/internal/plugin"
	"github.com/softreload/softreload/internal/testing/envtest"
)

// krewPlugin is the part of krew's Plugin manifest that a release relies on.
type krewPlugin struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Description      string `json:"description"`
		Caveats          string `json:"caveats"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
			Files  []struct {
				From string `json:"from"`
				To   string `json:"to"`
			} `json:"files"`
		} `json:"platforms"`
	} `json:"spec"`
}

// TestKrewManifest fills the template the way a release does and checks
// that what comes out is a manifest krew can install from: a version tag,
// and for each platform an archive URL of that tag and a sha256.
func TestKrewManifest(t *testing.T) {
	root, err := envtest.RepoRoot()
	must(t, err)
	data, err := os.ReadFile(filepath.Join(root, "hack", "krew", "softreload.yaml"))
	must(t, err)
	var manifest []string // without the comments, which name the placeholders
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "#") {
			manifest = append(manifest, line)
		}
	}
	filled := os.Expand(strings.Join(manifest, "\n"), func(name string) string {
		if name == "VERSION" {
			return "v1.2.3"
		}
		if strings.HasPrefix(name, "SHA256_") {
			return strings.Repeat("ab", 32)
		}
		t.Errorf("unknown placeholder ${%s}", name)
		return ""
	})
	var m krewPlugin
	must(t, yaml.UnmarshalStrict([]byte(filled), &m, yaml.DisallowUnknownFields))
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "softreload" {
		t.Errorf("not the softreload krew plugin: %s %s %s", m.APIVersion, m.Kind, m.Metadata.Name)
	}
	if m.Spec.Version != "v1.2.3" || m.Spec.ShortDescription == "" || m.Spec.Description == "" || m.Spec.Homepage == "" {
		t.Errorf("spec.version = %q, shortDescription = %q, description = %q, homepage = %q",
			m.Spec.Version, m.Spec.ShortDescription, m.Spec.Description, m.Spec.Homepage)
	}
	if len(m.Spec.Platforms) == 0 {
		t.Fatal("no platforms")
	}
	sha := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, p := range m.Spec.Platforms {
		goos, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		wantURI := fmt.Sprintf("https://github.com/softreload/softreload/releases/download/v1.2.3/kubectl-softreload_%s_%s.tar.gz", goos, arch)
		if p.URI != wantURI {
			t.Errorf("%s/%s: uri = %q, want %q", goos, arch, p.URI, wantURI)
		}
		if !sha.MatchString(p.SHA256) {
			t.Errorf("%s/%s: sha256 = %q", goos, arch, p.SHA256)
		}
		wantBin := "kubectl-softreload"
		if goos == "windows" {
			wantBin += ".exe"
		}
		if p.Bin != wantBin || len(p.Files) == 0 || p.Files[0].From != wantBin {
			t.Errorf("%s/%s: bin = %q, files = %+v; want %s installed", goos, arch, p.Bin, p.Files, wantBin)
		}
	}
	if !strings.Contains(string(data), "TO BE FILLED AT RELEASE") {
		t.Error("the template does not say that its placeholders are filled at release")
	}
}

// TestDocsCoverEveryCommand keeps docs/kubectl-plugin.md in step with the
// commands the plugin has.
func TestDocsCoverEveryCommand(t *testing.T) {
	root, err := envtest.RepoRoot()
	must(t, err)
	data, err := os.ReadFile(filepath.Join(root, "docs", "kubectl-plugin.md"))
	must(t, err)
	doc := string(data)
	for _, cmd := range plugin.NewCommand(plugin.Options{}).Commands() {
		switch cmd.Name() {
		case "help", "completion", "version":
			continue
		}
		if !strings.Contains(doc, "## "+cmd.Name()+" ") && !strings.Contains(doc, ", "+cmd.Name()+" POOL") {
			t.Errorf("docs/kubectl-plugin.md has no section for %s", cmd.Name())
		}
		if !strings.Contains(doc, "kubectl softreload "+cmd.Name()+" ") {
			t.Errorf("docs/kubectl-plugin.md shows no use of %s", cmd.Name())
		}
	}
}
