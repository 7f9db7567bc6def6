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
		// go run, not go build: it keeps the linked manager in the build
		// cache, so that a second run of the suite links nothing.
		var usage bytes.Buffer
		help := exec.Command("go", "run", "./cmd/manager", "-h")
		help.Dir = root
		help.Stdout, help.Stderr = &usage, &usage
		// -h prints the usage and exits; a manager that does not build
		// prints no flags, which fails below with the compiler's words.
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
