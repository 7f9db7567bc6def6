package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/revision"
	"github.com/softreload/softreload/internal/testing/envtest"
)

// signalWorker is a worker that says when it got SIGUSR2 and stops on
// SIGTERM.
const signalWorker = `trap 'echo "got SIGUSR2"' USR2
trap 'kill $s; exit 0' TERM
sleep 1000 & s=$!
echo started
while kill -0 $s 2>/dev/null; do wait $s; done`

// apiServer is the control plane of the tests of agent pod, started by the
// first test that needs it and stopped by TestMain.
var apiServer struct {
	once sync.Once
	env  *envtest.Env
	err  error
}

func startAPIServer(t *testing.T) *envtest.Env {
	t.Helper()
	apiServer.once.Do(func() { apiServer.env, apiServer.err = envtest.Start(envtest.Options{}) })
	if apiServer.err != nil {
		t.Fatalf("starting the API server: %v", apiServer.err)
	}
	return apiServer.env
}

func stopAPIServer() {
	if apiServer.env != nil {
		_ = apiServer.env.Stop()
	}
}

// signalled is an agent process that the test sends signals to.
type signalled struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    *testworker.Output
	exited chan error
}

// send sends sig and waits until the agent's output has a line with every
// one of want; it fails at once if the agent exits meanwhile.
func (a *signalled) send(sig syscall.Signal, want ...string) {
	a.t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		a.t.Fatal(err)
	}
	a.waitLine(sig.String(), want...)
}

// waitLine waits until a line of the agent's output has every one of want.
func (a *signalled) waitLine(after string, want ...string) {
	a.t.Helper()
	deadline := time.After(wait)
	for !hasLine(a.out.String(), want) {
		select {
		case err := <-a.exited:
			a.exited <- err
			a.t.Fatalf("the agent exited (%v) after %s, before it said %q:\n%s", err, after, want, a.out.String())
		case <-deadline:
			a.t.Fatalf("the agent never said %q after %s:\n%s", want, after, a.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exits sends sig and waits until the agent exits 0.
func (a *signalled) exits(sig syscall.Signal) {
	a.t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		a.t.Fatal(err)
	}
	select {
	case err := <-a.exited:
		a.exited <- err
		if err != nil {
			a.t.Fatalf("the agent exited with %v after %s, want 0:\n%s", err, sig, a.out.String())
		}
	case <-time.After(wait):
		a.t.Fatalf("the agent did not exit after %s:\n%s", sig, a.out.String())
	}
}

func hasLine(out string, want []string) bool {
	for line := range strings.Lines(out) {
		all := true
		for _, w := range want {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}

// gone waits until no process has pid.
func gone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(wait); syscall.Kill(pid, 0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("worker %d outlived its agent", pid)
		}
	}
}

// agent run: SIGUSR2 reaches every worker, signals that would end a Go
// program by default are ignored, and SIGQUIT drains the workers and exits
// 0 like SIGTERM (SIGHUP's reload is in TestStandalone).
func TestRunSignals(t *testing.T) {
	dir := t.TempDir()
	a := runAgent(t, dir, fmt.Sprintf(`
controlSocket: %s
groups:
  - name: web
    command: ["sh", "-c", %q]
    count: 2
    readiness: {delaySeconds: 0}
`, filepath.Join(dir, "c.sock"), signalWorker))
	s := &signalled{t: t, cmd: a.cmd, out: a.out, exited: a.exited}
	st := a.waitFor("the workers", ready)
	s.waitLine("the start", "[web/0] started")
	s.waitLine("the start", "[web/1] started")

	s.send(syscall.SIGTRAP, `msg="Ignoring signal"`, "trap")
	s.send(syscall.SIGPIPE) // silently
	s.send(syscall.SIGUSR2, `msg="Passing signal on to the workers"`)
	s.waitLine("SIGUSR2", "[web/0] got SIGUSR2")
	s.waitLine("SIGUSR2", "[web/1] got SIGUSR2")
	now := a.waitFor("the workers", ready)
	if fmt.Sprint(now.PIDs("web")) != fmt.Sprint(st.PIDs("web")) {
		t.Errorf("worker pids went from %v to %v: the signals restarted them", st.PIDs("web"), now.PIDs("web"))
	}

	s.exits(syscall.SIGQUIT)
	if !hasLine(a.out.String(), []string{`msg="Draining, asked by signal"`, "signal=quit"}) {
		t.Errorf("the agent did not say it drained on SIGQUIT:\n%s", a.out.String())
	}
	for _, pid := range st.PIDs("web") {
		gone(t, pid)
	}
}

// agent pod, as PID 1 of a pod's container would: no signal ends it by
// accident. SIGHUP and SIGUSR1 (reload, standalone) are logged and
// ignored, since reloads come from the WorkerPool; SIGUSR2 reaches the
// workers; the workers keep their pids; SIGTERM drains them and exits 0.
func TestPodSignals(t *testing.T) {
	env := startAPIServer(t)
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(env.Config)
	ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "signals-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := &v1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns.Name, UID: "pool-uid"}}
	spec := revision.Spec{Groups: []v1alpha1.WorkerGroup{{
		Name: "web", Command: []string{"sh", "-c", signalWorker}, Count: 1,
		Readiness: v1alpha1.Readiness{Type: v1alpha1.ReadinessDelay, DelaySeconds: new(int32)},
	}}}
	snapshot, err := revision.NewSnapshot(pool, "r1", spec, revision.Code{Data: map[string]string{"README": "signals"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns.Name).Create(ctx, snapshot, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Annotations: map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	root := t.TempDir()
	cmd := exec.Command(agentBin, "pod", "--kubeconfig", writeKubeconfig(t, env))
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0",
		injection.EnvPodName+"=web-0", injection.EnvPodNamespace+"="+ns.Name,
		injection.EnvPool+"=web", injection.EnvCodeRoot+"="+root)
	a := &signalled{t: t, cmd: cmd, out: &testworker.Output{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = a.out, a.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent pod output:\n%s", a.out.String())
		}
	})
	podReady := func() bool {
		p, err := kube.CoreV1().Pods(ns.Name).Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			return false
		}
		st, _ := v1alpha1.ParseAgentStatus(p.Annotations[v1alpha1.StatusAnnotation])
		return st != nil && st.State == v1alpha1.AgentReady && st.Revision == "r1" && st.Ready == 1
	}
	for deadline := time.Now().Add(wait); !podReady(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pod never reported Ready at r1:\n%s", a.out.String())
		}
	}
	a.waitLine("the start", "[web/0] started")
	before := podStatus(t, root)

	a.send(syscall.SIGHUP, `msg="Ignoring signal"`, "signal=hangup", "reloads come from the WorkerPool")
	a.send(syscall.SIGUSR1, `msg="Ignoring signal"`, `signal="user defined signal 1"`, "reloads come from the WorkerPool")
	a.send(syscall.SIGTRAP, `msg="Ignoring signal"`, "trap")
	a.send(syscall.SIGUSR2, `msg="Passing signal on to the workers"`)
	a.waitLine("SIGUSR2", "[web/0] got SIGUSR2")
	after := podStatus(t, root)
	if fmt.Sprint(after.PIDs("web")) != fmt.Sprint(before.PIDs("web")) || after.Agent.Running != "r1" {
		t.Errorf("after the signals the workers are %v at %s, before %v at r1", after.PIDs("web"), after.Agent.Running, before.PIDs("web"))
	}
	if !podReady() {
		t.Error("the pod no longer reports Ready at r1 after the signals")
	}

	a.exits(syscall.SIGTERM)
	for _, pid := range before.PIDs("web") {
		gone(t, pid)
	}
}

// podStatus is `agent status --json` of an agent pod.
func podStatus(t *testing.T, root string) supervisor.Status {
	t.Helper()
	out, err := exec.Command(agentBin, "status", "--json", "--socket", filepath.Join(root, "agent.sock")).CombinedOutput()
	if err != nil {
		t.Fatalf("agent status: %v\n%s", err, out)
	}
	var st supervisor.Status
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("agent status --json: %v\n%s", err, out)
	}
	return st
}

// writeKubeconfig writes a kubeconfig that reaches env as its administrator.
func writeKubeconfig(t *testing.T, env *envtest.Env) string {
	t.Helper()
	c := env.Config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	cfg.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
