package plugin_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
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

// readRepoFile reads a file of the repository by its slash-separated path.
func readRepoFile(path string) string {
	GinkgoHelper()
	root, err := envtest.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(path)))
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

var _ = Describe("The krew manifest template", func() {
	// It fills the template the way a release does and checks that what
	// comes out is a manifest krew can install from: a version tag, and for
	// each platform an archive URL of that tag and a sha256.
	It("makes, filled as a release fills it, a manifest krew installs from", func() {
		data := readRepoFile("hack/krew/softreload.yaml")
		var manifest []string // without the comments, which name the placeholders
		for _, line := range strings.Split(data, "\n") {
			if !strings.HasPrefix(line, "#") {
				manifest = append(manifest, line)
			}
		}
		var unknown []string
		filled := os.Expand(strings.Join(manifest, "\n"), func(name string) string {
			if name == "VERSION" {
				return "v1.2.3"
			}
			if strings.HasPrefix(name, "SHA256_") {
				return strings.Repeat("ab", 32)
			}
			unknown = append(unknown, "${"+name+"}")
			return ""
		})
		Expect(unknown).To(BeEmpty(), "unknown placeholders")
		var m krewPlugin
		Expect(yaml.UnmarshalStrict([]byte(filled), &m, yaml.DisallowUnknownFields)).To(Succeed())
		Expect([]string{m.APIVersion, m.Kind, m.Metadata.Name}).To(Equal([]string{"krew.googlecontainertools.github.com/v1alpha2", "Plugin", "softreload"}),
			"not the softreload krew plugin")
		Expect(m.Spec).To(SatisfyAll(
			HaveField("Version", "v1.2.3"),
			HaveField("ShortDescription", Not(BeEmpty())),
			HaveField("Description", Not(BeEmpty())),
			HaveField("Homepage", Not(BeEmpty())),
		), "spec")
		Expect(m.Spec.Platforms).NotTo(BeEmpty(), "platforms")
		for _, p := range m.Spec.Platforms {
			goos, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
			Expect(p.URI).To(Equal(fmt.Sprintf("https://github.com/softreload/softreload/releases/download/v1.2.3/kubectl-softreload_%s_%s.tar.gz", goos, arch)),
				"%s/%s: uri", goos, arch)
			Expect(p.SHA256).To(MatchRegexp(`^[0-9a-f]{64}$`), "%s/%s: sha256", goos, arch)
			wantBin := "kubectl-softreload"
			if goos == "windows" {
				wantBin += ".exe"
			}
			Expect(p.Bin).To(Equal(wantBin), "%s/%s: bin", goos, arch)
			Expect(p.Files).NotTo(BeEmpty(), "%s/%s: files; want %s installed", goos, arch, wantBin)
			Expect(p.Files[0].From).To(Equal(wantBin), "%s/%s: files[0].from; want %s installed", goos, arch, wantBin)
		}
		Expect(data).To(ContainSubstring("TO BE FILLED AT RELEASE"), "the template does not say that its placeholders are filled at release")
	})
})

// docs/kubectl-plugin.md is kept in step with the commands the plugin has.
var _ = Describe("docs/kubectl-plugin.md", func() {
	It("has a section and an example for every command", func() {
		doc := readRepoFile("docs/kubectl-plugin.md")
		for _, cmd := range plugin.NewCommand(plugin.Options{}).Commands() {
			switch cmd.Name() {
			case "help", "completion", "version":
				continue
			}
			Expect(strings.Contains(doc, "## "+cmd.Name()+" ") || strings.Contains(doc, ", "+cmd.Name()+" POOL")).
				To(BeTrue(), "docs/kubectl-plugin.md has no section for %s", cmd.Name())
			Expect(doc).To(ContainSubstring("kubectl softreload "+cmd.Name()+" "), "docs/kubectl-plugin.md shows no use of %s", cmd.Name())
		}
	})
})
