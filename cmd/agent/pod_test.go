package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/softreload/softreload/agent/testworker"
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

// What the code container of image mode runs: the image's code lands in
// the code volume whole, and the container then waits for SIGTERM.
func TestCodeSync(t *testing.T) {
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "images", "abc")
	if err := os.MkdirAll(filepath.Join(from, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"app.py": "v7", "lib/util.py": "u"} {
		if err := os.WriteFile(filepath.Join(from, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(agentBin, "code-sync", "--from", from, "--to", to)
	var out testworker.Output
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(wait)
	for !strings.Contains(out.String(), "is in") {
		select {
		case err := <-done:
			t.Fatalf("code-sync exited before SIGTERM: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("code-sync said nothing:\n%s", out.String())
		}
	}
	for name, want := range map[string]string{"app.py": "v7", "lib/util.py": "u"} {
		if got, err := os.ReadFile(filepath.Join(to, name)); err != nil || string(got) != want {
			t.Errorf("%s in the code volume: %q, %v; want %q", name, got, err, want)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("code-sync after SIGTERM: %v\n%s", err, out.String())
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
	cmd = exec.Command(agentBin, "pod", "--kubeconfig", kubeconfig)
	cmd.Env = append(os.Environ(), "POD_NAME=web-0", "POD_NAMESPACE=shop", "SOFTRELOAD_POOL=web",
		"SOFTRELOAD_CODE_ROOT="+t.TempDir(), "SOFTRELOAD_PORT_OFFSET=lots")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `SOFTRELOAD_PORT_OFFSET="lots"`) {
		t.Fatalf("agent pod with a bad port offset: %v, want a refusal naming it\n%s", err, out)
	}
}
