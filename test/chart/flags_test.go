package chart

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// Every flag the install passes to the manager is a flag of cmd/manager: a
// renamed flag fails here, not in a CrashLoopBackOff.
var _ = Describe("The manager", func() {
	It("knows every flag the install passes", func() {
		bin := filepath.Join(GinkgoT().TempDir(), "manager")
		build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
		build.Dir = root
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "go build ./cmd/manager:\n%s", out)
		// -h prints the usage and exits non-zero with the flag package.
		var usage bytes.Buffer
		help := exec.Command(bin, "-h")
		help.Stdout, help.Stderr = &usage, &usage
		_ = help.Run()
		known := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^\s+--?([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(usage.String(), -1) {
			known[m[1]] = true
		}
		Expect(known).NotTo(BeEmpty(), "no flags in the manager's usage:\n%s", usage.String())

		installs := map[string]objects{
			"chart defaults":           mustTemplate(""),
			"chart custom":             mustTemplate(customValues),
			"chart cert-manager":       mustTemplate(certManagerValues),
			"chart no metrics, leader": mustTemplate(noMetricsValues + noLeaderElectionValues),
			"kustomize default":        kustomize(filepath.Join(root, "config", "default")),
		}
		for name, objs := range installs {
			for _, arg := range args(objs) {
				flag, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
				Expect(known).To(HaveKey(flag), "%s passes %s, which cmd/manager does not know; its usage:\n%s", name, arg, usage.String())
			}
		}
	})
})
