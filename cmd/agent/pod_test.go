package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// What the injected init container runs: the agent copies itself, runnable.
func TestInstall(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "bin", "agent")
	if out, err := exec.Command(agentBin, "install", dest).CombinedOutput(); err != nil {
		t.Fatalf("agent install: %v\n%s", err, out)
	}
	out, err := exec.Command(dest, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "reload them one at a time") {
		t.Fatalf("the installed agent does not run: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(agentBin)
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, want) {
		t.Error("the installed agent differs from the agent")
	}
}

// agent pod outside a pod says what it misses.
func TestPodNeedsItsPod(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(agentBin, "pod", "--kubeconfig", kubeconfig)
	cmd.Env = append(os.Environ(), "POD_NAME=", "POD_NAMESPACE=", "SOFTRELOAD_POOL=", "SOFTRELOAD_CODE_ROOT=")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "POD_NAMESPACE and POD_NAME must be set") {
		t.Fatalf("agent pod without its pod's name: %v, want a refusal naming POD_NAME\n%s", err, out)
	}
}

// The local mode's listen host and port offset stay out of the production
// agent: only the agent built with the softreload_local tag reads them.
func TestProductionAgentHasNoLocalMode(t *testing.T) {
	bin, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"SOFTRELOAD_LISTEN_HOST", "SOFTRELOAD_PORT_OFFSET"} {
		if bytes.Contains(bin, []byte(name)) {
			t.Errorf("the agent built without the softreload_local tag reads %s", name)
		}
	}
}
