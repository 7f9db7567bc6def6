package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/softreload/softreload/agent/supervisor"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// signalWorker is a worker that says when it got SIGUSR2 and stops on
// SIGTERM.
const signalWorker = `trap 'echo "got SIGUSR2"' USR2
trap 'kill $s; exit 0' TERM
sleep 1000 & s=$!
echo started
while kill -0 $s 2>/dev/null; do wait $s; done`

// signalled is an agent process that the spec sends signals to.
type signalled struct {
	cmd    *exec.Cmd
	out    *testworker.Output
	exited chan error
}

// send sends sig and waits until the agent's output has a line with every
// one of want; it fails at once if the agent exits meanwhile.
func (a *signalled) send(sig syscall.Signal, want ...string) {
	GinkgoHelper()
	Expect(a.cmd.Process.Signal(sig)).To(Succeed())
	a.waitLine(sig.String(), want...)
}

// waitLine waits until a line of the agent's output has every one of want;
// it fails at once if the agent exits meanwhile.
func (a *signalled) waitLine(after string, want ...string) {
	GinkgoHelper()
	Eventually(func() (bool, error) {
		select {
		case err := <-a.exited:
			a.exited <- err
			return false, StopTrying(fmt.Sprintf("the agent exited (%v) after %s, before it said %q:\n%s", err, after, want, a.out.String()))
		default:
		}
		return hasLine(a.out.String(), want), nil
	}).WithTimeout(wait).WithPolling(20*time.Millisecond).Should(BeTrue(), func() string {
		return fmt.Sprintf("the agent never said %q after %s:\n%s", want, after, a.out.String())
	})
}

// exits sends sig and waits until the agent exits 0.
func (a *signalled) exits(sig syscall.Signal) {
	GinkgoHelper()
	Expect(a.cmd.Process.Signal(sig)).To(Succeed())
	var err error
	Eventually(a.exited).WithTimeout(wait).Should(Receive(&err), func() string {
		return fmt.Sprintf("the agent did not exit after %s:\n%s", sig, a.out.String())
	})
	a.exited <- err
	Expect(err).NotTo(HaveOccurred(), "the agent's exit after %s, want 0:\n%s", sig, a.out.String())
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
func gone(pid int) {
	GinkgoHelper()
	Eventually(func() error { return syscall.Kill(pid, 0) }).WithTimeout(wait).WithPolling(20*time.Millisecond).
		Should(MatchError(syscall.ESRCH), "worker %d outlived its agent", pid)
}

// agent run: SIGUSR2 reaches every worker, signals that would end a Go
// program by default are ignored, and SIGQUIT drains the workers and exits
// 0 like SIGTERM (SIGHUP's reload is in agent run's first spec).
var _ = Describe("agent run, signalled", func() {
	It("passes SIGUSR2 on, ignores what would end a Go program, and drains on SIGQUIT", func() {
		dir := GinkgoT().TempDir()
		a := runAgent(dir, fmt.Sprintf(`
controlSocket: %s
groups:
  - name: web
    command: ["sh", "-c", %q]
    count: 2
    readiness: {delaySeconds: 0}
`, filepath.Join(dir, "c.sock"), signalWorker))
		s := &signalled{cmd: a.cmd, out: a.out, exited: a.exited}
		st := a.waitFor("the workers", ready)
		s.waitLine("the start", "[web/0] started")
		s.waitLine("the start", "[web/1] started")

		s.send(syscall.SIGTRAP, `msg="Ignoring signal"`, "trap")
		s.send(syscall.SIGPIPE) // silently
		s.send(syscall.SIGUSR2, `msg="Passing signal on to the workers"`)
		s.waitLine("SIGUSR2", "[web/0] got SIGUSR2")
		s.waitLine("SIGUSR2", "[web/1] got SIGUSR2")
		now := a.waitFor("the workers", ready)
		Expect(now.PIDs("web")).To(Equal(st.PIDs("web")), "worker pids: the signals restarted them")

		s.exits(syscall.SIGQUIT)
		Expect(hasLine(a.out.String(), []string{`msg="Draining, asked by signal"`, "signal=quit"})).To(BeTrue(),
			"the agent did not say it drained on SIGQUIT:\n%s", a.out.String())
		for _, pid := range st.PIDs("web") {
			gone(pid)
		}
	})
})

// agent pod, as PID 1 of a pod's container would: no signal ends it by
// accident. SIGHUP and SIGUSR1 (reload, standalone) are logged and
// ignored, since reloads come from the WorkerPool; SIGUSR2 reaches the
// workers; the workers keep their pids; SIGTERM drains them and exits 0.
var _ = Describe("agent pod, signalled", Label(suite.ControlPlane), func() {
	It("ignores reload signals, passes SIGUSR2 on, keeps its workers, and drains on SIGTERM", func() {
		ctx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		kube := kubernetes.NewForConfigOrDie(env.Config)
		ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "signals-"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		pool := &v1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns.Name, UID: "pool-uid"}}
		spec := poolrevision.Spec{Groups: []v1alpha1.WorkerGroup{{
			Name: "web", Command: []string{"sh", "-c", signalWorker}, Count: 1,
			Readiness: v1alpha1.Readiness{Type: v1alpha1.ReadinessDelay, DelaySeconds: new(int32)},
		}}}
		snapshot, err := poolrevision.NewSnapshot(pool, "r1", spec, poolrevision.Code{Data: map[string]string{"README": "signals"}})
		Expect(err).NotTo(HaveOccurred())
		_, err = kube.CoreV1().ConfigMaps(ns.Name).Create(ctx, snapshot, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = kube.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "web-0", Annotations: map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		root := GinkgoT().TempDir()
		cmd := exec.Command(agentBin, "pod", "--kubeconfig", writeKubeconfig(env))
		cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0",
			injection.EnvPodName+"=web-0", injection.EnvPodNamespace+"="+ns.Name,
			injection.EnvPool+"=web", injection.EnvCodeRoot+"="+root)
		a := &signalled{cmd: cmd, out: &testworker.Output{}, exited: make(chan error, 1)}
		cmd.Stdout, cmd.Stderr = a.out, a.out
		Expect(cmd.Start()).To(Succeed())
		go func() { a.exited <- cmd.Wait() }()
		DeferCleanup(func() {
			_ = cmd.Process.Kill()
			if CurrentSpecReport().Failed() {
				fmt.Fprintf(GinkgoWriter, "agent pod output:\n%s\n", a.out.String())
			}
		})
		podReport := env.AgentReport(ctx, ns.Name, "web-0")
		readyAtR1 := SatisfyAll(HaveField("State", v1alpha1.AgentReady), HaveField("Revision", "r1"), HaveField("Ready", BeEquivalentTo(1)))
		Eventually(podReport).WithTimeout(wait).WithPolling(50*time.Millisecond).Should(readyAtR1, func() string {
			return "the pod never reported Ready at r1:\n" + a.out.String()
		})
		a.waitLine("the start", "[web/0] started")
		before := podStatus(root)

		a.send(syscall.SIGHUP, `msg="Ignoring signal"`, "signal=hangup", "reloads come from the WorkerPool")
		a.send(syscall.SIGUSR1, `msg="Ignoring signal"`, `signal="user defined signal 1"`, "reloads come from the WorkerPool")
		a.send(syscall.SIGTRAP, `msg="Ignoring signal"`, "trap")
		a.send(syscall.SIGUSR2, `msg="Passing signal on to the workers"`)
		a.waitLine("SIGUSR2", "[web/0] got SIGUSR2")
		after := podStatus(root)
		Expect(after.PIDs("web")).To(Equal(before.PIDs("web")), "the workers' pids after the signals")
		Expect(after.Agent.Running).To(Equal("r1"), "the workers' revision after the signals")
		Expect(podReport()).To(readyAtR1, "the pod's report after the signals")

		a.exits(syscall.SIGTERM)
		for _, pid := range before.PIDs("web") {
			gone(pid)
		}
	})
})

// podStatus is `agent status --json` of an agent pod.
func podStatus(root string) supervisor.Status {
	GinkgoHelper()
	out, err := exec.Command(agentBin, "status", "--json", "--socket", filepath.Join(root, "agent.sock")).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "agent status:\n%s", out)
	var st supervisor.Status
	Expect(json.Unmarshal(out, &st)).To(Succeed(), "agent status --json:\n%s", out)
	return st
}

// writeKubeconfig writes a kubeconfig that reaches env as its administrator.
func writeKubeconfig(env *envtest.Env) string {
	GinkgoHelper()
	c := env.Config
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["envtest"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertData, ClientKeyData: c.KeyData, Token: c.BearerToken}
	cfg.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	cfg.CurrentContext = "envtest"
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(clientcmd.WriteToFile(*cfg, path)).To(Succeed())
	return path
}
