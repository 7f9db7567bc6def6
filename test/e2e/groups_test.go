//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/agent/supervisor"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/procstat"
	testsuite "github.com/softreload/softreload/internal/testing/suite"
)

// Group changes in place, through the WorkerPool, on the system the suite
// started and under its load: web's count 2 to 4 to 1, a second address for
// web added and removed, a group added and removed. The steps run in order
// and leave the pool's groups as they found them, so that this container
// and "Pods under load" run in either order.
var _ = Describe("Group changes in place under load", Ordered, Label("e2e", testsuite.ControlPlane), func() {
	var (
		// groups are the pool's groups before the first step.
		groups []v1alpha1.WorkerGroup
		// second is the port web listens on too, api the added group's.
		second, api int
	)
	BeforeAll(func() {
		s.waitRolledOut("the pool settles", "")
		pool := s.pool()
		groups = pool.Spec.Groups
		Expect(s.group(pool, "web").Count).To(Equal(int32(2)), "web's count, as the walkthrough's pool has it")
		ports := s.freePorts(2, local.ExampleWebPort+1, local.ExampleWebPort+50)
		second, api = ports[0], ports[1]
	})
	// The groups as they were, also when a step failed.
	AfterAll(func() {
		if groups == nil || equality.Semantic.DeepEqual(s.pool().Spec.Groups, groups) {
			return
		}
		s.changeGroups("the pool's groups back as they were", func([]v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup { return groups })
	})
	AfterEach(func() { s.stepHeld() })

	It("count 2 to 4 starts two web workers per pod beside the two that serve", func() {
		before := s.webPIDs()
		s.changeGroups("web's count 2 to 4", func(gs []v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup {
			return withWeb(gs, func(g *v1alpha1.WorkerGroup) { g.Count = 4 })
		})
		after := s.webPIDs()
		for _, p := range s.pods {
			Expect(after[p.Name]).To(HaveLen(4), "pod %s: web workers", p.Name)
			Expect(after[p.Name][:2]).To(Equal(before[p.Name]), "pod %s: the web workers that served before the change", p.Name)
			s.readyWeb(p, 4)
		}
	})

	It("count 4 to 1 stops the surplus and keeps slot 0", func() {
		before := s.webPIDs()
		surplus := map[string]map[int]procstat.Stat{}
		for _, p := range s.pods {
			surplus[p.Name] = processes(before[p.Name][1:])
		}
		s.changeGroups("web's count 4 to 1", func(gs []v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup {
			return withWeb(gs, func(g *v1alpha1.WorkerGroup) { g.Count = 1 })
		})
		after := s.webPIDs()
		for _, p := range s.pods {
			Expect(after[p.Name]).To(Equal(before[p.Name][:1]), "pod %s: web's slot 0 serves on, alone", p.Name)
			Expect(running(surplus[p.Name])).To(BeEmpty(), "pod %s: web's surplus workers, stopped", p.Name)
			s.readyWeb(p, 1)
		}
	})

	It("a second address: web's workers are replaced by ones that inherit it", func() {
		before := s.webPIDs()
		addr := v1alpha1.ListenAddress(fmt.Sprintf("tcp://0.0.0.0:%d", second))
		s.changeGroups("web listens on a second address", func(gs []v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup {
			return withWeb(gs, func(g *v1alpha1.WorkerGroup) { g.Listen = append(g.Listen, addr) })
		})
		after := s.webPIDs()
		for _, p := range s.pods {
			Expect(after[p.Name]).To(HaveLen(1), "pod %s: web workers", p.Name)
			Expect(before[p.Name]).NotTo(ContainElement(after[p.Name][0]), "pod %s: web's worker without the address serves on", p.Name)
			Expect(s.dial(p, second)).To(Succeed(), "pod %s: the second address", p.Name)
			Expect(environ(after[p.Name][0])).To(ContainElement("LISTEN_FDNAMES=web-0:web-1"), "pod %s: web's worker, its sockets", p.Name)
		}
	})

	It("the second address removed: web's workers are replaced, then the address closes", func() {
		before := s.webPIDs()
		s.changeGroups("web's second address removed", func(gs []v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup {
			return withWeb(gs, func(g *v1alpha1.WorkerGroup) { g.Listen = g.Listen[:1] })
		})
		after := s.webPIDs()
		for _, p := range s.pods {
			Expect(before[p.Name]).NotTo(ContainElement(after[p.Name][0]), "pod %s: web's worker with the address serves on", p.Name)
			Expect(s.dial(p, second)).NotTo(Succeed(), "pod %s: the second address is still open", p.Name)
			Expect(environ(after[p.Name][0])).To(ContainElement("LISTEN_FDNAMES=web-0"), "pod %s: web's worker, its sockets", p.Name)
		}
	})

	It("a group added starts, and the other groups keep their workers", func() {
		before := s.webPIDs()
		rev := s.changeGroups("a group added", func(gs []v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup {
			g := *s.group(&v1alpha1.WorkerPool{Spec: v1alpha1.WorkerPoolSpec{Groups: gs}}, "web").DeepCopy()
			g.Name, g.Count, g.Listen = "api", 1, []v1alpha1.ListenAddress{v1alpha1.ListenAddress(fmt.Sprintf("tcp://0.0.0.0:%d", api))}
			return append(slices.Clone(gs), g)
		})
		Expect(s.webPIDs()).To(Equal(before), "web's workers")
		for _, p := range s.pods {
			Expect(s.get(p, api)).To(Equal(fmt.Sprintf("%s (revision %s)\n", s.greeting(), rev)), "pod %s: the answer of the added group", p.Name)
			Expect(workers(s.ctx, p).PIDs("api")).To(HaveLen(1), "pod %s: the added group's workers", p.Name)
		}
	})

	It("the group removed stops, and the other groups keep their workers", func() {
		before := s.webPIDs()
		removed := map[string]map[int]procstat.Stat{}
		for _, p := range s.pods {
			removed[p.Name] = processes(workers(s.ctx, p).PIDs("api"))
		}
		s.changeGroups("the group removed", func(gs []v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup {
			return slices.DeleteFunc(slices.Clone(gs), func(g v1alpha1.WorkerGroup) bool { return g.Name == "api" })
		})
		Expect(s.webPIDs()).To(Equal(before), "web's workers")
		for _, p := range s.pods {
			Expect(s.dial(p, api)).NotTo(Succeed(), "pod %s: the removed group's address is still open", p.Name)
			Expect(workers(s.ctx, p).PIDs("api")).To(BeEmpty(), "pod %s: the removed group's workers", p.Name)
			Expect(running(removed[p.Name])).To(BeEmpty(), "pod %s: the removed group's workers, stopped", p.Name)
		}
	})

	It("the groups back as they were: web's count 1 to 2 starts one worker", func() {
		before := s.webPIDs()
		s.changeGroups("the pool's groups back as they were", func([]v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup { return groups })
		after := s.webPIDs()
		for _, p := range s.pods {
			Expect(after[p.Name]).To(HaveLen(2), "pod %s: web workers", p.Name)
			Expect(after[p.Name][:1]).To(Equal(before[p.Name]), "pod %s: web's slot 0", p.Name)
		}
	})
})

// stepHeld is what every step of the suite keeps: every request answered,
// every gateway held. On a failure it shows the processes' logs.
func (s *suite) stepHeld() {
	if CurrentSpecReport().Failed() {
		logf("%s", local.LogTails(s.dir, 60))
		return
	}
	if failures := InterceptGomegaFailures(func() {
		s.noFailedRequests()
		s.gatewaysHeld()
	}); len(failures) > 0 {
		logf("%s", local.LogTails(s.dir, 60))
		Fail(strings.Join(failures, "\n"))
	}
}

// changeGroups sets the pool's groups to what change makes of them, waits
// until every pod runs the revision of the new spec (the controller's name
// for the spec and the code, poolrevision.Hash), checks that no more pods
// reloaded at once than the budget allows, and returns the revision.
func (s *suite) changeGroups(what string, change func([]v1alpha1.WorkerGroup) []v1alpha1.WorkerGroup) string {
	GinkgoHelper()
	s.rec.ResetMax()
	pool := &v1alpha1.WorkerPool{}
	s.must(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: local.ExamplePool}, pool); err != nil {
			return err
		}
		pool.Spec.Groups = change(pool.Spec.Groups)
		return s.c.Update(s.ctx, pool)
	}))
	code := &corev1.ConfigMap{}
	s.must(s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: local.ExampleCode}, code))
	rev := poolrevision.Hash(poolrevision.SpecOf(pool), poolrevision.CodeOf(code))
	s.waitRolledOut(what+" (revision "+rev+")", rev)
	s.withinBudget()
	return rev
}

// pool reads the pool.
func (s *suite) pool() *v1alpha1.WorkerPool {
	GinkgoHelper()
	pool := &v1alpha1.WorkerPool{}
	s.must(s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: local.ExamplePool}, pool))
	return pool
}

// group returns the pool's group called name.
func (s *suite) group(pool *v1alpha1.WorkerPool, name string) *v1alpha1.WorkerGroup {
	GinkgoHelper()
	i := slices.IndexFunc(pool.Spec.Groups, func(g v1alpha1.WorkerGroup) bool { return g.Name == name })
	Expect(i).NotTo(BeNumerically("<", 0), "the pool has no group %q", name)
	return &pool.Spec.Groups[i]
}

// withWeb returns a copy of groups with the web group changed.
func withWeb(groups []v1alpha1.WorkerGroup, change func(*v1alpha1.WorkerGroup)) []v1alpha1.WorkerGroup {
	out := make([]v1alpha1.WorkerGroup, len(groups))
	for i, g := range groups {
		out[i] = *g.DeepCopy()
		if g.Name == "web" {
			change(&out[i])
		}
	}
	return out
}

// readyWeb checks that pod p's agent runs n web workers, every one ready,
// and none besides.
func (s *suite) readyWeb(p *local.Pod, n int) {
	GinkgoHelper()
	var states []supervisor.WorkerState
	for _, w := range workers(s.ctx, p).Workers {
		if w.Group == "web" {
			states = append(states, w.State)
		}
	}
	Expect(states).To(HaveLen(n), "pod %s: web workers", p.Name)
	Expect(states).To(HaveEach(supervisor.WorkerReady), "pod %s: web workers", p.Name)
}

// freePorts returns n ports from first to last (never the example's own)
// that are free on every pod, at each pod's offset.
func (s *suite) freePorts(n, first, last int) []int {
	GinkgoHelper()
	var out []int
	for port := first; port <= last && len(out) < n; port++ {
		if port == local.ExampleWebPort || port == local.ExampleGWPort {
			continue
		}
		free := true
		for _, p := range s.pods {
			l, err := net.Listen("tcp", p.Addr(port))
			if err != nil {
				free = false
				break
			}
			_ = l.Close()
		}
		if free {
			out = append(out, port)
		}
	}
	Expect(out).To(HaveLen(n), "free ports from %d to %d on every pod", first, last)
	return out
}

// dial connects to pod p's port and closes the connection.
func (s *suite) dial(p *local.Pod, port int) error {
	conn, err := net.DialTimeout("tcp", p.Addr(port), 5*time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// get sends one request to pod p's port on a new connection, and returns
// the answer.
func (s *suite) get(p *local.Pod, port int) string {
	GinkgoHelper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	resp, err := client.Get("http://" + p.Addr(port) + "/")
	Expect(err).NotTo(HaveOccurred(), "pod %s, port %d", p.Name, port)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred(), "pod %s, port %d: the answer", p.Name, port)
	return string(body)
}

// environ returns the environment process pid was started with.
func environ(pid int) []string {
	GinkgoHelper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	Expect(err).NotTo(HaveOccurred(), "the environment of process %d", pid)
	return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
}

// reloadableRevisions returns the revisions the serving workers of a pod's
// reloadable groups run: the pod's running revision, and older ones of
// the same code for workers kept across a change of their count alone (a
// kept worker keeps the revision it started with).
func reloadableRevisions(st supervisor.Status) []string {
	var out []string
	for _, w := range st.Workers {
		if w.Reloadable && !w.Next && !slices.Contains(out, w.Revision) {
			out = append(out, w.Revision)
		}
	}
	return out
}
