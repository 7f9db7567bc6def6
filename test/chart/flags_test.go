package chart

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Every flag the install passes to the manager is a flag of cmd/manager: a
// renamed flag fails here, not in a CrashLoopBackOff.
func TestManagerKnowsEveryFlagTheInstallPasses(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/manager: %v\n%s", err, out)
	}
	// -h prints the usage and exits non-zero with the flag package.
	var usage bytes.Buffer
	help := exec.Command(bin, "-h")
	help.Stdout, help.Stderr = &usage, &usage
	_ = help.Run()
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+--?([a-z0-9][a-z0-9-]*)`).FindAllStringSubmatch(usage.String(), -1) {
		known[m[1]] = true
	}
	if len(known) == 0 {
		t.Fatalf("no flags in the manager's usage:\n%s", usage.String())
	}

	installs := map[string]objects{
		"chart defaults":           mustTemplate(t, ""),
		"chart custom":             mustTemplate(t, customValues),
		"chart cert-manager":       mustTemplate(t, certManagerValues),
		"chart no metrics, leader": mustTemplate(t, noMetricsValues+noLeaderElectionValues),
		"kustomize default":        kustomize(t, filepath.Join(root, "config", "default")),
	}
	for name, objs := range installs {
		for _, arg := range args(t, objs) {
			flag, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			if !known[flag] {
				t.Errorf("%s passes %s, which cmd/manager does not know; its usage:\n%s", name, arg, usage.String())
			}
		}
	}
}
