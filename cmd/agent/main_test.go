package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/testing/loopback"
	"github.com/softreload/softreload/internal/testing/suite"
)

// runningAgent is an agent process, as users run it.
type runningAgent struct {
	config string
	cmd    *exec.Cmd
	out    *testworker.Output
	exited chan error
}

// runAgent starts `agent run --config` on the config text, written into
// dir, until the spec ends.
func runAgent(dir, config string) *runningAgent {
	GinkgoHelper()
	path := filepath.Join(dir, "pool.yaml")
	Expect(os.WriteFile(path, []byte(config), 0o644)).To(Succeed())
	a := &runningAgent{config: path, out: &testworker.Output{}, exited: make(chan error, 1)}
	a.cmd = exec.Command(agentBin, "run", "--config", path)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	Expect(a.cmd.Start()).To(Succeed())
	go func() { a.exited <- a.cmd.Wait() }()
	DeferCleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-a.exited:
			if err != nil {
				fmt.Fprintf(GinkgoWriter, "agent exit: %v\n", err)
			}
		case <-time.After(wait):
			_ = a.cmd.Process.Kill()
		}
		if CurrentSpecReport().Failed() {
			fmt.Fprintf(GinkgoWriter, "agent output:\n%s\n", a.out.String())
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

// waitFor waits until `agent status --json` says what cond takes,
// described by what, and returns it.
func (a *runningAgent) waitFor(what string, cond func(supervisor.Status) bool) supervisor.Status {
	GinkgoHelper()
	var st supervisor.Status
	Eventually(func() (bool, error) {
		var err error
		st, err = a.status()
		return err == nil && cond(st), err
	}).WithTimeout(wait).WithPolling(50*time.Millisecond).Should(BeTrue(), func() string {
		return fmt.Sprintf("waiting for %s: %+v", what, st)
	})
	return st
}

// exits waits until the agent exits 0, after what.
func (a *runningAgent) exits(after string) {
	GinkgoHelper()
	var err error
	Eventually(a.exited).WithTimeout(wait).Should(Receive(&err), "the agent did not exit after %s", after)
	a.exited <- err // for the cleanup
	Expect(err).NotTo(HaveOccurred(), "the agent's exit after %s, want 0", after)
}

func ready(st supervisor.Status) bool {
	return st.Agent.State == v1alpha1.AgentReady && st.Agent.Ready == st.Agent.Total && st.Agent.Total > 0
}

func get(url string) string {
	GinkgoHelper()
	c := &http.Client{Timeout: wait, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	Expect(err).NotTo(HaveOccurred(), "GET %s", url)
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

var _ = Describe("agent run", func() {
	// The agent binary driven as a user does: run, status, reload by
	// command and by SIGHUP, metrics, and SIGTERM, which lets a request in
	// flight finish and exits 0.
	It("runs, reports, reloads by command and by SIGHUP, and drains on SIGTERM", func() {
		self, err := os.Executable()
		Expect(err).NotTo(HaveOccurred())
		dir := GinkgoT().TempDir()
		code := filepath.Join(dir, "code")
		Expect(os.Mkdir(code, 0o755)).To(Succeed())
		writeVersion := func(v string) {
			Expect(os.WriteFile(filepath.Join(code, "version"), []byte(v), 0o644)).To(Succeed())
		}
		writeVersion("1")
		port, metricsPort := loopback.FreePort(GinkgoTB()), loopback.FreePort(GinkgoTB())
		sockDir, err := os.MkdirTemp("", "sr")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(os.RemoveAll, sockDir)
		a := runAgent(dir, fmt.Sprintf(`
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
		Expect(err).NotTo(HaveOccurred(), "agent status:\n%s", table)
		for _, want := range []string{"GROUP  SLOT  PID", "web    0", "web    1", first, "Ready"} {
			Expect(table).To(ContainSubstring(want), "agent status")
		}

		By("agent reload")
		writeVersion("2")
		out, err := a.cli("reload")
		Expect(err).NotTo(HaveOccurred(), "agent reload:\n%s", out)
		Expect(out).To(ContainSubstring("reloaded: revision"), "agent reload")
		st = a.waitFor("the reload", ready)
		second := st.Agent.Running
		Expect(second).NotTo(Equal(first), "after agent reload the workers run the revision from before")
		Expect(out).To(ContainSubstring(second), "agent reload names the revision the workers run")
		Expect(get(url)).To(ContainSubstring("version=2"), "answer after agent reload")

		By("SIGHUP")
		writeVersion("3")
		Expect(a.cmd.Process.Signal(syscall.SIGHUP)).To(Succeed())
		st = a.waitFor("the reload asked by SIGHUP", func(st supervisor.Status) bool { return ready(st) && st.Agent.Running != second })
		Expect(get(url)).To(ContainSubstring("version=3"), "answer after SIGHUP")

		By("counting the drains: two reloads stopped four workers, which all honoured their stop signal")
		Expect(st.Groups).To(HaveLen(1), "agent status --json groups")
		Expect(st.Groups[0].Name).To(Equal("web"), "agent status --json groups")
		Expect(st.Groups[0].Stopped).To(BeEquivalentTo(4), "agent status --json groups: web's stopped workers")
		Expect(st.Killed()).To(BeZero(), "agent status --json groups: killed workers")
		table, err = a.cli("status")
		Expect(err).NotTo(HaveOccurred())
		Expect(table).To(MatchRegexp(`(?m)^GROUP +STOPPED +KILLED +LAST DRAIN +SLOWEST DRAIN\nweb +4 +0 +[0-9.]+m?s +[0-9.]+m?s$`),
			"agent status prints the web group's 4 drains, none killed")

		By("once idle, the agent's binary is out of its resident set but for the code it runs")
		bin, err := os.Stat(agentBin)
		Expect(err).NotTo(HaveOccurred())
		Eventually(residentFile).WithArguments(strconv.Itoa(a.cmd.Process.Pid)).WithTimeout(wait).
			Should(BeNumerically("<", bin.Size()/1024/4), "the idle agent's resident pages of files (RssFile), in KiB, against its binary's %d KiB", bin.Size()/1024)

		metrics := get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
		for _, want := range []string{
			`softreload_agent_reloads_total{result="succeeded"} 2`,
			`softreload_agent_workers{group="web",revision=`,
			"softreload_agent_reload_duration_seconds_count 2",
			`softreload_agent_reloads_total{result="failed"} 0`,
			`softreload_agent_worker_drain_seconds_count{group="web"} 4`,
			`softreload_agent_worker_stop_kills_total{group="web"} 0`,
		} {
			Expect(metrics).To(ContainSubstring(want), "metrics")
		}

		By("SIGTERM with a request in flight")
		result := make(chan string, 1)
		go func() {
			c := &http.Client{Timeout: wait}
			resp, err := c.Get(url + "?sleep=1000&log=1")
			if err != nil {
				result <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			result <- string(b)
		}()
		Eventually(a.out.String).WithTimeout(wait).WithPolling(10*time.Millisecond).
			Should(ContainSubstring("handling a slow request"), "the slow request never reached a worker")
		Expect(a.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		Expect(<-result).To(ContainSubstring("version=3"), "the request in flight at SIGTERM")
		a.exits("SIGTERM")
		out, err = a.cli("status")
		Expect(err).To(HaveOccurred(), "agent status with no agent: %s", out)
		Expect(out).To(ContainSubstring("no agent answers"), "agent status with no agent")
	})

	It("stops on agent stop", func() {
		dir := GinkgoT().TempDir()
		a := runAgent(dir, fmt.Sprintf(`
controlSocket: %s
groups:
  - name: sleeper
    command: ["sleep", "1000"]
    readiness: {delaySeconds: 0}
`, filepath.Join(dir, "c.sock")))
		a.waitFor("the sleeper", ready)
		out, err := a.cli("stop")
		Expect(err).NotTo(HaveOccurred(), "agent stop:\n%s", out)
		a.exits("agent stop")
	})

	It("refuses a bad config, naming the file and the field", func() {
		dir := GinkgoT().TempDir()
		path := filepath.Join(dir, "pool.yaml")
		Expect(os.WriteFile(path, []byte("groups:\n- {name: web, command: [a], listen: ['tcp://:80', 'tcp://:80']}\n"), 0o644)).To(Succeed())
		out, err := exec.Command(agentBin, "run", "--config", path).CombinedOutput()
		Expect(err).To(HaveOccurred(), "agent run accepted a bad config")
		for _, want := range []string{path, "groups[0].listen[1]", "Duplicate value"} {
			Expect(string(out)).To(ContainSubstring(want))
		}
	})

	// Each example worker under the agent, under load, through two
	// reloads: no request may fail.
	DescribeTable("runs each example under load through two reloads, losing no request", Label(suite.Slow),
		func(dir, command, needs string, build bool) {
			root, err := filepath.Abs("../..")
			Expect(err).NotTo(HaveOccurred())
			if needs != "" {
				_, err := exec.LookPath(needs)
				Expect(err).NotTo(HaveOccurred(), "%s is not installed: the examples need it (apt-get install php-cli python3 nodejs; .ci/run does)", needs)
			}
			tmp := GinkgoT().TempDir()
			code := filepath.Join(tmp, "code")
			Expect(os.CopyFS(code, os.DirFS(filepath.Join(root, dir)))).To(Succeed())
			if build {
				cmd := exec.Command("go", "build", "-o", filepath.Join(code, "go-worker"), "./"+dir)
				cmd.Dir = root
				out, err := cmd.CombinedOutput()
				Expect(err).NotTo(HaveOccurred(), "building the example:\n%s", out)
			}
			port := loopback.FreePort(GinkgoTB())
			a := runAgent(tmp, fmt.Sprintf(`
codeDir: code
stateDir: state
controlSocket: %s
groups:
  - name: web
    command: %s
    count: 3
    listen: ["tcp://127.0.0.1:%d"]
    readiness: {type: Notify, timeoutSeconds: 120}
`, filepath.Join(tmp, "c.sock"), command, port))
			a.waitFor("every worker ready", ready)
			url := fmt.Sprintf("http://127.0.0.1:%d/", port)
			// Each request may take as long as any wait here: a loaded
			// machine is slow, not failing.
			g := load.Start([]string{url}, load.Options{Workers: 3, Pause: 2 * time.Millisecond, Timeout: wait})
			DeferCleanup(func() { g.Stop() })
			for i := range 2 {
				f, err := os.OpenFile(filepath.Join(code, "CHANGES"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
				Expect(err).NotTo(HaveOccurred())
				_, err = fmt.Fprintln(f, "change", i)
				Expect(err).NotTo(HaveOccurred())
				Expect(f.Close()).To(Succeed())
				out, err := a.cli("reload")
				Expect(err).NotTo(HaveOccurred(), "agent reload:\n%s", out)
			}
			st := a.waitFor("the last revision", ready)
			Expect(get(url)).To(ContainSubstring("revision "+st.Agent.Running), "the answer after the reloads")
			ok, failed, errs := load.Total(g.Stop())
			Expect(failed).To(BeZero(), "%d requests failed (e.g. %v), %d succeeded", failed, errs, ok)
			Expect(ok).NotTo(BeZero(), "no request succeeded")
		},
		Entry("go", "examples/go", `["./go-worker"]`, "", true),
		Entry("python", "examples/python", `["python3", "worker.py"]`, "python3", false),
		Entry("php", "examples/php", `["php", "worker.php"]`, "php", false),
		Entry("node", "examples/node", `["node", "worker.js"]`, "node", false),
	)
})
