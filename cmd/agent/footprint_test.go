package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// The agent runs in every governed pod, so each package it links is paid
// in every pod: its code, and whatever its init registers at start-up.
// agent pod follows one pod, reads ConfigMaps and patches an annotation;
// it must not link controller-runtime, client-go's clientset or informer
// factory (each brings every API group and registers it in client-go's
// scheme), or any API group besides core/v1.
func TestTheAgentLinksOnlyWhatItUses(t *testing.T) {
	list := exec.Command("go", "list", "-deps", ".")
	var stderr bytes.Buffer
	list.Stderr = &stderr
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/agent: %v\n%s", err, stderr.String())
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps ./cmd/agent lists %d packages; it cannot be the agent's", len(deps))
	}
	forbidden := []struct{ prefix, why string }{
		{"sigs.k8s.io/controller-runtime", "controller-runtime (the manager's library)"},
		{"k8s.io/client-go/kubernetes", "client-go's clientset or its scheme of every API group"},
		{"k8s.io/client-go/informers", "client-go's informer factory of every API group"},
		{"k8s.io/client-go/dynamic", "client-go's dynamic client"},
		{"k8s.io/client-go/applyconfigurations", "client-go's apply configurations of every API group"},
		{"github.com/softreload/softreload/controllers", "the controllers"},
		{"github.com/softreload/softreload/internal/injection", "the injection webhook"},
	}
	allowedAPI := map[string]bool{"k8s.io/api/core/v1": true}
	for _, dep := range deps {
		for _, f := range forbidden {
			if dep == f.prefix || strings.HasPrefix(dep, f.prefix+"/") {
				t.Errorf("the agent links %s: %s; agent/pod's Client needs core/v1 alone", dep, f.why)
			}
		}
		if strings.HasPrefix(dep, "k8s.io/api/") && !allowedAPI[dep] {
			t.Errorf("the agent links API group %s; it uses core/v1 alone", dep)
		}
	}
}
