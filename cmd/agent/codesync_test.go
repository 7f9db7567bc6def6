package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/softreload/softreload/agent/pod"
	"github.com/softreload/softreload/agent/testworker"
)

// codeContainer is one start of the code container of image mode: agent
// code-sync with the environment the downward API gives it.
type codeContainer struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *testworker.Output
	done chan error
}

func startCodeSync(t *testing.T, root, image, path string) *codeContainer {
	t.Helper()
	c := &codeContainer{t: t, out: &testworker.Output{}, done: make(chan error, 1)}
	c.cmd = exec.Command(agentBin, "code-sync", "--root", root)
	c.cmd.Env = append(os.Environ(), pod.EnvCodeImage+"="+image, pod.EnvCodePath+"="+path)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() { _ = c.cmd.Process.Kill() })
	return c
}

// delivered waits until the container says it delivered the code, then
// stops it as the kubelet does when the image changes.
func (c *codeContainer) delivered() {
	c.t.Helper()
	deadline := time.After(wait)
	for !strings.Contains(c.out.String(), "is in") {
		select {
		case err := <-c.done:
			c.t.Fatalf("code-sync exited before SIGTERM: %v\n%s", err, c.out.String())
		case <-deadline:
			c.t.Fatalf("code-sync said nothing:\n%s", c.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// A SIGHUP (a reload signal elsewhere) does not end it; the SIGTERM
	// that follows stops it cleanly.
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		c.t.Fatal(err)
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
	if err := <-c.done; err != nil {
		c.t.Errorf("code-sync after SIGTERM: %v\n%s", err, c.out.String())
	}
}

// failed waits until the container exits with an error that says want.
func (c *codeContainer) failed(want string) {
	c.t.Helper()
	select {
	case err := <-c.done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(c.out.String(), want) {
			c.t.Fatalf("code-sync ended with %v, saying:\n%s\nwant a failure that says %q", err, c.out.String(), want)
		}
	case <-time.After(wait):
		c.t.Fatalf("code-sync did not fail:\n%s", c.out.String())
	}
}

// The code container of a pod delivers the code of whatever image it runs,
// to where the agent looks for that image, however often the controller
// changes its image: the kubelet starts it again each time, with the
// annotations of the new image.
func TestCodeSyncDeliversTheImageItRuns(t *testing.T) {
	root := t.TempDir()
	image := func(files map[string]string) string { // an image's /code
		dir := t.TempDir()
		for name, content := range files {
			path := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	v1 := image(map[string]string{"app.py": "v1", "lib/util.py": "u"})
	v2 := image(map[string]string{"app.py": "v2", "lib/util.py": "u"})
	holds := func(ref, path string, want map[string]string) {
		t.Helper()
		for name, content := range want {
			got, err := os.ReadFile(filepath.Join(pod.ImageCodeDir(root, ref, path), name))
			if err != nil || string(got) != content {
				t.Errorf("%s of image %s in the code volume: %q, %v; want %q", name, ref, got, err, content)
			}
		}
	}

	startCodeSync(t, root, "registry.example/code:v1", v1).delivered()
	holds("registry.example/code:v1", v1, map[string]string{"app.py": "v1", "lib/util.py": "u"})

	// The controller moves the pod to v2: same command, new image.
	startCodeSync(t, root, "registry.example/code:v2", v2).delivered()
	holds("registry.example/code:v2", v2, map[string]string{"app.py": "v2"})
	holds("registry.example/code:v1", v1, map[string]string{"app.py": "v1"})

	// A rollback to v1 finds its code there, the same.
	startCodeSync(t, root, "registry.example/code:v1", v1).delivered()

	// v1's tag now names other code: never kept silently, and the code
	// that workers may run is left as it was.
	if err := os.WriteFile(filepath.Join(v1, "app.py"), []byte("v1, pushed again"), 0o644); err != nil {
		t.Fatal(err)
	}
	startCodeSync(t, root, "registry.example/code:v1", v1).failed("already holds other code")
	holds("registry.example/code:v1", v1, map[string]string{"app.py": "v1"})
}

// Without the annotations (a pod made by hand, say) code-sync says what it
// misses.
func TestCodeSyncNeedsItsImage(t *testing.T) {
	startCodeSync(t, t.TempDir(), "", "/code").failed(pod.EnvCodeImage + " is empty")
}
