package pod_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"

	"github.com/softreload/softreload/agent/control"
	"github.com/softreload/softreload/agent/pod"
	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/agent/testworker"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/loopback"
	"github.com/softreload/softreload/internal/testing/suite"
)

// TestMain lets this test binary be the process shim and the test worker
// that the real engine (SupervisorEngine) starts.
func TestMain(m *testing.M) {
	process.RunShimIfAsked()
	testworker.RunIfAsked()
	os.Exit(m.Run())
}

// workerGroup is a group of test workers (this test binary run again) on
// listen, ready when they say READY=1.
func workerGroup(name string, count int32, listen ...v1alpha1.ListenAddress) v1alpha1.WorkerGroup {
	self, err := os.Executable()
	Expect(err).NotTo(HaveOccurred())
	return v1alpha1.WorkerGroup{
		Name: name, Command: []string{self}, Count: count, Listen: listen,
		Env:       []v1alpha1.EnvVar{{Name: testworker.Env, Value: "1"}, {Name: "GORACE", Value: "atexit_sleep_ms=0"}},
		Readiness: v1alpha1.Readiness{Type: v1alpha1.ReadinessNotify, TimeoutSeconds: 120},
	}
}

func tcpAddress() v1alpha1.ListenAddress {
	return v1alpha1.ListenAddress(fmt.Sprintf("tcp://127.0.0.1:%d", loopback.FreePort(GinkgoTB())))
}

func url(a v1alpha1.ListenAddress) string {
	return "http://" + strings.TrimPrefix(string(a), "tcp://") + "/"
}

// get sends one request over a new connection to a (tcp or unix).
func get(a v1alpha1.ListenAddress) (string, error) {
	network, addr, _ := strings.Cut(string(a), "://")
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	resp, err := c.Get("http://worker/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

var _ = Describe("The pod agent with its real engine", Label(suite.ControlPlane), func() {
	// A revision that scales a group, adds an address and a group, then
	// one that removes them and changes the gateway: the agent applies
	// both in place, under load on the unchanged address, and reports the
	// gateway that keeps its older spec.
	It("changes counts, addresses and groups in place", func() {
		r := newRig("web-groups", nil)
		out := &testworker.Output{}
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				fmt.Fprintf(GinkgoWriter, "agent log:\n%s\nworkers:\n%s\n", r.log.String(), out.String())
			}
		})
		a, gwAddr, apiAddr := tcpAddress(), tcpAddress(), tcpAddress()
		b := v1alpha1.ListenAddress("unix://" + filepath.Join(r.root, "web.sock"))
		gateway := workerGroup("gateway", 1, gwAddr)
		gateway.Reloadable = ptr.To(false)
		code := map[string]string{"version": "1"}
		r.snapshot("r1", poolrevision.Spec{Groups: []v1alpha1.WorkerGroup{workerGroup("web", 1, a), gateway}}, code)
		r2 := []v1alpha1.WorkerGroup{workerGroup("web", 2, a, b), gateway, workerGroup("api", 1, apiAddr)}
		r.snapshot("r2", poolrevision.Spec{Groups: r2}, code)
		changed := *gateway.DeepCopy()
		changed.Env = append(changed.Env, v1alpha1.EnvVar{Name: "GATEWAY_MODE", Value: "new"})
		r.snapshot("r3", poolrevision.Spec{Groups: []v1alpha1.WorkerGroup{workerGroup("web", 1, a), changed}}, code)

		r.runAgent("web-groups", pod.EngineOptions{Stdout: out, Stderr: out})
		ready := func(rev string, total int32) { GinkgoHelper(); r.waitReady("web-groups", rev, total) }
		r.annotate("web-groups", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		ready("r1", 2)
		conn, err := net.Dial("tcp", strings.TrimPrefix(string(gwAddr), "tcp://"))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		br := bufio.NewReader(conn)
		ask := func() string {
			GinkgoHelper()
			Expect(conn.SetDeadline(time.Now().Add(time.Minute))).To(Succeed())
			_, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
			Expect(err).NotTo(HaveOccurred(), "writing on the gateway's connection")
			resp, err := http.ReadResponse(br, nil)
			Expect(err).NotTo(HaveOccurred(), "reading on the gateway's connection")
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			return string(body)
		}
		first := ask()
		g := load.Start([]string{url(a)}, load.Options{Workers: 2, Pause: 2 * time.Millisecond, Timeout: time.Minute})
		DeferCleanup(func() { g.Stop() })

		By("a revision that scales web, gives it a second address and adds a group")
		r.annotate("web-groups", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
		ready("r2", 4)
		for _, addr := range []v1alpha1.ListenAddress{b, apiAddr} {
			body, err := get(addr)
			Expect(err).NotTo(HaveOccurred(), "a request on %s", addr)
			Expect(body).To(HavePrefix("rev=r2 "), "the answer on %s", addr)
		}

		By("a revision that takes them back and changes the gateway")
		r.annotate("web-groups", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r3"})
		ready("r3", 2)
		st, err := r.report("web-groups")()
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Groups).To(Equal([]v1alpha1.AgentGroupStatus{
			{Name: "web", Spec: v1alpha1.GroupSpecHash(workerGroup("web", 1, a))},
			// Connections: the spec's one connection, which the agent
			// counted again for the report of r3.
			{Name: "gateway", Spec: v1alpha1.GroupSpecHash(gateway), Outdated: v1alpha1.GroupSpecChanged, Connections: 1},
		}), "the report's groups")
		for _, addr := range []v1alpha1.ListenAddress{b, apiAddr} {
			_, err := get(addr)
			Expect(err).To(HaveOccurred(), "%s still answers", addr)
		}
		Expect(ask()).To(Equal(first), "the gateway's connection (same worker, same revision)")

		ok, failed, errs := load.Total(g.Stop())
		Expect(failed).To(BeZero(), "%d of %d requests on the unchanged address failed, e.g. %v", failed, ok+failed, errs)
		Expect(ok).NotTo(BeZero())
	})
})

// runAgent runs the agent of pod name with the real engine (opts, logging
// to the rig's log) until the spec ends.
func (r *rig) runAgent(name string, opts pod.EngineOptions) {
	opts.Logger = slog.New(slog.NewTextHandler(r.log, nil))
	agent, err := pod.New(pod.Options{
		Client: newClient(env.Config), Namespace: r.ns, PodName: name, Pool: "web", CodeRoot: r.root,
		Logger:    slog.New(slog.NewTextHandler(r.log, nil)),
		NewEngine: pod.SupervisorEngine(r.ctx, opts),
	})
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	DeferCleanup(func() {
		cancel()
		Eventually(done).WithTimeout(2*time.Minute).Should(Receive(BeNil()), "the agent")
	})
}

// waitReady waits until pod name reports revision rev Ready, all total
// workers ready.
func (r *rig) waitReady(name, rev string, total int32) {
	GinkgoHelper()
	Eventually(r.report(name)).WithTimeout(2*time.Minute).WithPolling(50*time.Millisecond).
		Should(status(rev, v1alpha1.AgentReady, rev, HaveField("Total", total), HaveField("Ready", total)), "the pod's report")
}

var _ = Describe("The pod agent on a count change", Label(suite.ControlPlane), func() {
	// Each revision of a pod names its groups too, so a count change is a
	// new revision; its code is the same, and the workers that run it keep
	// serving: count up starts only the new ones, count down stops only
	// the surplus. New code replaces them all.
	It("keeps the workers of unchanged code and spec", func() {
		r := newRig("web-count", nil)
		out := &testworker.Output{}
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				fmt.Fprintf(GinkgoWriter, "agent log:\n%s\nworkers:\n%s\n", r.log.String(), out.String())
			}
		})
		a := tcpAddress()
		v1, v2 := map[string]string{"version": "1"}, map[string]string{"version": "2"}
		r.snapshot("r1", poolrevision.Spec{Groups: []v1alpha1.WorkerGroup{workerGroup("web", 2, a)}}, v1)
		r.snapshot("r2", poolrevision.Spec{Groups: []v1alpha1.WorkerGroup{workerGroup("web", 4, a)}}, v1)
		r.snapshot("r3", poolrevision.Spec{Groups: []v1alpha1.WorkerGroup{workerGroup("web", 1, a)}}, v1)
		r.snapshot("r4", poolrevision.Spec{Groups: []v1alpha1.WorkerGroup{workerGroup("web", 1, a)}}, v2)
		sock := filepath.Join(r.root, "agent.sock")
		r.runAgent("web-count", pod.EngineOptions{ControlSocket: sock, Stdout: out, Stderr: out})
		pids := func() []int {
			GinkgoHelper()
			st, err := control.NewClient(sock).Status(r.ctx)
			Expect(err).NotTo(HaveOccurred(), "agent status")
			return st.PIDs("web")
		}
		to := func(rev string, total int32) {
			GinkgoHelper()
			r.annotate("web-count", map[string]string{v1alpha1.DesiredRevisionAnnotation: rev})
			r.waitReady("web-count", rev, total)
		}

		to("r1", 2)
		first := pids()
		Expect(first).To(HaveLen(2))
		g := load.Start([]string{url(a)}, load.Options{Workers: 2, Pause: 2 * time.Millisecond, Timeout: time.Minute})
		DeferCleanup(func() { g.Stop() })

		By("count 2 to 4: two workers start beside the two that serve")
		to("r2", 4)
		four := pids()
		Expect(four).To(HaveLen(4))
		Expect(four[:2]).To(Equal(first), "the workers of slots 0 and 1")
		Expect(four[2:]).NotTo(ContainElements(first))

		By("count 4 to 1: the surplus stops, slot 0 serves on")
		to("r3", 1)
		Expect(pids()).To(Equal(first[:1]), "the worker of slot 0")
		Expect(filepath.Join(r.root, "revisions", "r3")).NotTo(BeADirectory(), "the same code written again")

		By("new code: the worker is replaced")
		to("r4", 1)
		Expect(pids()).NotTo(ContainElement(first[0]), "the worker of the old code")
		body, err := get(a)
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(HavePrefix("rev=r4 version=2 "))

		ok, failed, errs := load.Total(g.Stop())
		Expect(failed).To(BeZero(), "%d of %d requests failed, e.g. %v", failed, ok+failed, errs)
		Expect(ok).NotTo(BeZero())
	})
})

var _ = Describe("The pod agent's code directories", Label(suite.ControlPlane), func() {
	// A revision of the same code as the one the engine runs (its groups
	// changed) gets that revision's directory and Code, also after a
	// restart of the agent; new code, or a restart asked of the same files,
	// gets a directory and a Code of its own.
	It("are shared by the revisions of one code", func() {
		r := newRig("web-dirs", nil)
		code := map[string]string{"app.py": "v1"}
		scaled := []v1alpha1.WorkerGroup{{Name: "web", Command: []string{"python3", "app.py"}, Count: 3}}
		r.snapshot("r1", poolrevision.Spec{Groups: groups}, code)
		r.snapshot("r2", poolrevision.Spec{Groups: scaled}, code)
		r.snapshot("r3", poolrevision.Spec{Groups: scaled, RestartedAt: "2026-12-02T11:00:00Z"}, code)
		r.snapshot("r4", poolrevision.Spec{Groups: groups}, code)
		stop := r.start("web-dirs")
		ready := func(rev string) {
			GinkgoHelper()
			st := v1alpha1.AgentStatus{Revision: rev, State: v1alpha1.AgentReady, Running: rev, Ready: 1, Total: 1}
			r.engine.status <- st
			r.waitReport("web-dirs", st)
		}
		r.annotate("web-dirs", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r1"})
		first := receive(r.starts, "engine start")
		Expect(first.Code).NotTo(BeEmpty(), "r1's code")
		ready("r1")

		r.annotate("web-dirs", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r2"})
		second := receive(r.engine.reloads, "reload to r2")
		Expect(second.Dir).To(Equal(first.Dir), "r2's directory, of r1's code")
		Expect(second.Code).To(Equal(first.Code), "r2's code")
		Expect(filepath.Join(r.root, "revisions", "r2")).NotTo(BeADirectory(), "the same code written again")
		ready("r2")

		By("a restart asked of the same files")
		r.annotate("web-dirs", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r3"})
		third := receive(r.engine.reloads, "reload to r3")
		Expect(third.Dir).To(Equal(filepath.Join(r.root, "revisions", "r3")), "r3's directory")
		Expect(third.Code).NotTo(Equal(first.Code), "r3's code")
		ready("r3")

		By("a restart of the agent")
		stop()
		r.start("web-dirs")
		again := receive(r.starts, "engine start after the restart")
		Expect(again).To(Equal(third), "the revision kept for a restart")
		r.annotate("web-dirs", map[string]string{v1alpha1.DesiredRevisionAnnotation: "r4"})
		fourth := receive(r.engine.reloads, "reload to r4")
		Expect(fourth.Code).To(Equal(first.Code), "r4's code")
		Expect(fourth.Dir).To(Equal(filepath.Join(r.root, "revisions", "r4")), "r4's directory: r1's is not in use")
	})
})
