package main

import (
	"bytes"
	"os/exec"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// The agent runs in every governed pod, so each package it links is paid
// in every pod: its code, and whatever its init registers at start-up,
// whether the agent calls it or not (docs/agent.md, "Footprint").
var _ = Describe("the agent's footprint", func() {
	// deps is what go list -deps says the agent links.
	deps := func() []string {
		GinkgoHelper()
		list := exec.Command("go", "list", "-deps", ".")
		var stderr bytes.Buffer
		list.Stderr = &stderr
		out, err := list.Output()
		Expect(err).NotTo(HaveOccurred(), "go list -deps ./cmd/agent:\n%s", stderr.String())
		pkgs := strings.Fields(string(out))
		Expect(len(pkgs)).To(BeNumerically(">=", 50), "go list -deps ./cmd/agent lists too few packages to be the agent's")
		return pkgs
	}

	// agent pod follows one pod, reads ConfigMaps and patches an
	// annotation: agent/pod's Client needs core/v1 alone.
	It("links no API group but core/v1, and neither controller-runtime nor client-go's clientset, informer factory or dynamic client", func() {
		forbidden := map[string]string{
			"sigs.k8s.io/controller-runtime":                      "controller-runtime (the manager's library)",
			"k8s.io/client-go/kubernetes":                         "client-go's clientset or its scheme of every API group",
			"k8s.io/client-go/informers":                          "client-go's informer factory of every API group",
			"k8s.io/client-go/dynamic":                            "client-go's dynamic client",
			"k8s.io/client-go/applyconfigurations":                "client-go's apply configurations of every API group",
			"github.com/softreload/softreload/controllers":        "the controllers",
			"github.com/softreload/softreload/internal/injection": "the injection webhook",
		}
		Expect(linked(deps(), forbidden)).To(BeEmpty())
		var groups []string
		for _, dep := range deps() {
			if strings.HasPrefix(dep, "k8s.io/api/") && dep != "k8s.io/api/core/v1" {
				groups = append(groups, dep)
			}
		}
		Expect(groups).To(BeEmpty(), "the agent links API groups it does not use; it uses core/v1 alone")
	})

	// The Prometheus client's init builds a default registry with its Go
	// and process collectors, and brings protobuf's runtime and its
	// registrations: 1.2-1.5 MiB resident in every agent. agent/metrics writes
	// the same metrics with VictoriaMetrics' library.
	It("links neither the Prometheus client nor protobuf's runtime", func() {
		Expect(linked(deps(), map[string]string{
			"github.com/prometheus/client_golang": "the Prometheus client (agent/metrics uses VictoriaMetrics' library)",
			"github.com/prometheus/common":        "the Prometheus client's exposition formats",
			"github.com/prometheus/procfs":        "the Prometheus client's process collector",
			"google.golang.org/protobuf":          "protobuf's runtime (the Prometheus client's exposition types)",
		})).To(BeEmpty())
	})
})

// linked names the packages of deps that are, or are under, one of the
// forbidden prefixes, each with why it must not be there.
func linked(deps []string, forbidden map[string]string) []string {
	var found []string
	for _, dep := range deps {
		for prefix, why := range forbidden {
			if dep == prefix || strings.HasPrefix(dep, prefix+"/") {
				found = append(found, dep+": "+why)
			}
		}
	}
	return found
}
