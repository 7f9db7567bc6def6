package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/loopback"
)

// agentBin is the agent built from this package, run as users run it.
var agentBin string

func TestMain(m *testing.M) {
	testworker.RunIfAsked()
	dir, err := os.MkdirTemp("", "agent-bin")
	if err != nil {
		panic(err)
	}
	agentBin = filepath.Join(dir, "agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	stopAPIServer()
	os.RemoveAll(dir)
	os.Exit(code)
}

const wait = 2 * time.Minute

type runningAgent struct {
	t      *testing.T
	config string
	cmd    *exec.Cmd
	out    *testworker.Output
	exited chan error
}

// runAgent starts `agent run --config` on the config text, written into dir.
func runAgent(t *testing.T, dir, config string) *runningAgent {
	t.Helper()
	path := filepath.Join(dir, "pool.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &runningAgent{t: t, config: path, out: &testworker.Output{}, exited: make(chan error, 1)}
	a.cmd = exec.Command(agentBin, "run", "--config", path)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-a.exited:
			if err != nil {
				t.Logf("agent exit: %v", err)
			}
		case <-time.After(wait):
			_ = a.cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("agent output:\n%s", a.out.String())
		}
	})
	return a
}

// cli runs an agent command against the running agent.
func (a *runningAgent) cli(args ...string) (string, error) {
	cmd := exec.Command(agentBin, append(args, "--config", a.config)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (a *runningAgent) status() (supervisor.Status, error) {
	out, err := a.cli("status", "--json")
	if err != nil {
		return supervisor.Status{}, fmt.Errorf("%w: %s", err, out)
	}
	var st supervisor.Status
	err = json.Unmarshal([]byte(out), &st)
	return st, err
}

func (a *runningAgent) waitFor(what string, cond func(supervisor.Status) bool) supervisor.Status {
	a.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st, err := a.status()
		if err == nil && cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("timed out waiting for %s: %+v, %v", what, st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ready(st supervisor.Status) bool {
	return st.Agent.State == v1alpha1.AgentReady && st.Agent.Ready == st.Agent.Total && st.Agent.Total > 0
}

func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestStandalone drives the agent binary as a user does: run, status,
// reload by command and by SIGHUP, metrics, and SIGTERM, which lets a
// request in flight finish and exits 0.
func TestStandalone(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	code := filepath.Join(dir, "code")
	if err := os.Mkdir(code, 0o755); err != nil {
		t.Fatal(err)
	}
	writeVersion := func(v string) {
		if err := os.WriteFile(filepath.Join(code, "version"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeVersion("1")
	port, metricsPort := loopback.FreePort(t), loopback.FreePort(t)
	sockDir, err := os.MkdirTemp("", "sr")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	a := runAgent(t, dir, fmt.Sprintf(`
codeDir: code
stateDir: state
controlSocket: %s
metricsAddress: 127.0.0.1:%d
groups:
  - name: web
    command: [%q]
    count: 2
    env: [{name: %s, value: "1"}]
    listen: ["tcp://127.0.0.1:%d"]
    readiness: {type: Notify, timeoutSeconds: 120}
`, filepath.Join(sockDir, "c.sock"), metricsPort, self, testworker.Env, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	st := a.waitFor("every worker ready", ready)
	first := st.Agent.Running
	table, err := a.cli("status")
	if err != nil {
		t.Fatalf("agent status: %v\n%s", err, table)
	}
	for _, want := range []string{"GROUP  SLOT  PID", "web    0", "web    1", first, "Ready"} {
		if !strings.Contains(table, want) {
			t.Errorf("agent status prints\n%s\nwithout %q", table, want)
		}
	}

	// agent reload
	writeVersion("2")
	out, err := a.cli("reload")
	if err != nil || !strings.Contains(out, "reloaded: revision") {
		t.Fatalf("agent reload: %v\n%s", err, out)
	}
	st = a.waitFor("the reload", ready)
	second := st.Agent.Running
	if second == first || !strings.Contains(out, second) {
		t.Errorf("after agent reload the workers run %s (before: %s); reload said %q", second, first, out)
	}
	if body := get(t, url); !strings.Contains(body, "version=2") {
		t.Errorf("answer after agent reload: %q", body)
	}

	// SIGHUP
	writeVersion("3")
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	st = a.waitFor("the reload asked by SIGHUP", func(st supervisor.Status) bool { return ready(st) && st.Agent.Running != second })
	if body := get(t, url); !strings.Contains(body, "version=3") {
		t.Errorf("answer after SIGHUP: %q", body)
	}

	// Two reloads stopped four workers, which all honoured their stop
	// signal: none killed.
	if len(st.Groups) != 1 || st.Groups[0].Name != "web" || st.Groups[0].Stopped != 4 || st.Killed() != 0 {
		t.Errorf("agent status --json groups = %+v, want web with 4 stopped, none killed", st.Groups)
	}
	table, err = a.cli("status")
	if err != nil || !regexp.MustCompile(`(?m)^GROUP +STOPPED +KILLED +LAST DRAIN +SLOWEST DRAIN\nweb +4 +0 +[0-9.]+m?s +[0-9.]+m?s$`).MatchString(table) {
		t.Errorf("agent status prints\n%s\nwithout the web group's 4 drains, none killed (%v)", table, err)
	}

	metrics := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	for _, want := range []string{
		`softreload_agent_reloads_total{result="succeeded"} 2`,
		`softreload_agent_workers{group="web",revision=`,
		"softreload_agent_reload_duration_seconds_count 2",
		`softreload_agent_reloads_total{result="failed"} 0`,
		`softreload_agent_worker_drain_seconds_count{group="web"} 4`,
		`softreload_agent_worker_stop_kills_total{group="web"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// SIGTERM with a request in flight.
	result := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: wait}
		resp, err := c.Get(url + "?sleep=1000&log=1")
		if err != nil {
			result <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		result <- string(b)
	}()
	deadline := time.Now().Add(wait)
	for !strings.Contains(a.out.String(), "handling a slow request") {
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reached a worker")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if body := <-result; !strings.Contains(body, "version=3") {
		t.Errorf("the request in flight at SIGTERM got %q", body)
	}
	select {
	case err := <-a.exited:
		if err != nil {
			t.Errorf("agent exited with %v after SIGTERM, want 0", err)
		}
		a.exited <- err
	case <-time.After(wait):
		t.Fatal("the agent did not exit after SIGTERM")
	}
	if out, err := a.cli("status"); err == nil || !strings.Contains(out, "no agent answers") {
		t.Errorf("agent status with no agent: %v, %q", err, out)
	}
}

func TestStopCommand(t *testing.T) {
	dir := t.TempDir()
	a := runAgent(t, dir, fmt.Sprintf(`
controlSocket: %s
groups:
  - name: sleeper
    command: ["sleep", "1000"]
    readiness: {delaySeconds: 0}
`, filepath.Join(dir, "c.sock")))
	a.waitFor("the sleeper", ready)
	if out, err := a.cli("stop"); err != nil {
		t.Fatalf("agent stop: %v\n%s", err, out)
	}
	select {
	case err := <-a.exited:
		if err != nil {
			t.Errorf("agent exited with %v after agent stop, want 0", err)
		}
		a.exited <- err
	case <-time.After(wait):
		t.Fatal("the agent did not exit after agent stop")
	}
}

func TestBadConfigIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.yaml")
	if err := os.WriteFile(path, []byte("groups:\n- {name: web, command: [a], listen: ['tcp://:80', 'tcp://:80']}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(agentBin, "run", "--config", path).CombinedOutput()
	if err == nil {
		t.Fatal("agent run accepted a bad config")
	}
	for _, want := range []string{path, "groups[0].listen[1]", "Duplicate value"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output %q does not say %q", out, want)
		}
	}
}

// TestExamples runs each example worker under the agent, under load, through
// two reloads: no request may fail.
func TestExamples(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		dir     string
		command string
		needs   string
		build   bool
	}{
		"go":     {dir: "examples/go", command: `["./go-worker"]`, build: true},
		"python": {dir: "examples/python", command: `["python3", "worker.py"]`, needs: "python3"},
		"php":    {dir: "examples/php", command: `["php", "worker.php"]`, needs: "php"},
		"node":   {dir: "examples/node", command: `["node", "worker.js"]`, needs: "node"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.needs != "" {
				if _, err := exec.LookPath(tc.needs); err != nil {
					t.Fatalf("%s is not installed: the examples need it (apt-get install php-cli python3 nodejs; .ci/run does)", tc.needs)
				}
			}
			dir := t.TempDir()
			code := filepath.Join(dir, "code")
			if err := os.CopyFS(code, os.DirFS(filepath.Join(root, tc.dir))); err != nil {
				t.Fatal(err)
			}
			if tc.build {
				cmd := exec.Command("go", "build", "-o", filepath.Join(code, "go-worker"), "./"+tc.dir)
				cmd.Dir = root
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("building the example: %v\n%s", err, out)
				}
			}
			port := loopback.FreePort(t)
			a := runAgent(t, dir, fmt.Sprintf(`
codeDir: code
stateDir: state
controlSocket: %s
groups:
  - name: web
    command: %s
    count: 3
    listen: ["tcp://127.0.0.1:%d"]
    readiness: {type: Notify, timeoutSeconds: 120}
`, filepath.Join(dir, "c.sock"), tc.command, port))
			a.waitFor("every worker ready", ready)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			var ok, failed atomic.Int64
			var firstErr atomic.Value
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := 0; i < 3; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
					for ctx.Err() == nil {
						resp, err := c.Get(url)
						if err == nil {
							_, err = io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if err == nil && resp.StatusCode != 200 {
								err = fmt.Errorf("status %d", resp.StatusCode)
							}
						}
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err.Error())
						} else {
							ok.Add(1)
						}
						time.Sleep(2 * time.Millisecond)
					}
				}()
			}
			for i := 0; i < 2; i++ {
				f, err := os.OpenFile(filepath.Join(code, "CHANGES"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintln(f, "change", i)
				f.Close()
				if out, err := a.cli("reload"); err != nil {
					t.Fatalf("agent reload: %v\n%s", err, out)
				}
			}
			st := a.waitFor("the last revision", ready)
			if body := get(t, url); !strings.Contains(body, "revision "+st.Agent.Running) {
				t.Errorf("answer %q is not from revision %s", body, st.Agent.Running)
			}
			cancel()
			wg.Wait()
			if failed.Load() > 0 || ok.Load() == 0 {
				t.Errorf("%d requests failed (e.g. %v), %d succeeded", failed.Load(), firstErr.Load(), ok.Load())
			}
		})
	}
}
