//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/gatewaycheck"
	testsuite "github.com/softreload/softreload/internal/testing/suite"
)

const (
	// gatewayClients is how many WebSocket clients this container adds,
	// spread over the three pods' gateways.
	gatewayClients = 20
	// businessReloads is how many code changes reload the business group.
	businessReloads = 5
	// brokenAfter is the code change after which a broken revision is
	// tried.
	brokenAfter = 3
	// seeNewCode is how soon after its pod's reload every client must be
	// answered by the new code.
	seeNewCode = time.Second
	// gatewayPause is each client's pause between an answer and its next
	// message.
	gatewayPause = 50 * time.Millisecond
)

// The gateway pattern through the WorkerPool: WebSocket clients keep their
// connections to the gateways through reloads of the business group (code
// changes of the code ConfigMap) and a broken revision that rolls back,
// every message is answered once, and every client is answered by the new
// code within seeNewCode of its pod's reload. It leaves the code as it
// found it, so that it and the other containers run in any order.
var _ = Describe("WebSocket clients through reloads of the business group", Ordered, Label("e2e", testsuite.ControlPlane), func() {
	var (
		// found is the code ConfigMap's data before the first step.
		found map[string]string
		// loads are this container's clients, one load per pod.
		loads map[string]*local.GatewayLoad
	)
	BeforeAll(func() {
		s.waitRolledOut("the pool settles", "")
		cm := &corev1.ConfigMap{}
		s.must(s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: local.ExampleCode}, cm))
		found = maps.Clone(cm.Data)
		loads = map[string]*local.GatewayLoad{}
		for i, p := range s.pods {
			n := gatewayClients / len(s.pods)
			if i < gatewayClients%len(s.pods) {
				n++
			}
			l, err := local.StartGatewayLoad([]string{p.Addr(local.ExampleGWPort)}, n, gatewayPause)
			s.must(err)
			loads[p.Name] = l
			DeferCleanup(func() { _, _, _ = l.Stop() }) // checked by the spec, if it got there
		}
		for _, p := range s.pods {
			Eventually(loads[p.Name].Answered).WithTimeout(time.Minute).Should(BeNumerically(">", 0), "pod %s: the clients' first answers", p.Name)
		}
	})
	// The code as it was, also when a step failed.
	AfterAll(func() {
		if found == nil || maps.Equal(s.app, found) {
			return
		}
		s.app = maps.Clone(found)
		s.setCode("the code back as it was", "greeting.txt", found["greeting.txt"])
	})
	AfterEach(func() { s.stepHeld() })

	It(fmt.Sprintf("keeps %d clients' connections through %d reloads and a broken revision, answers each message once, by the new code within %v", gatewayClients, businessReloads, seeNewCode), func() {
		for i := range businessReloads {
			if i == brokenAfter {
				s.brokenBusiness(loads, found["business.py"])
			}
			rev := s.setCode(fmt.Sprintf("business reload %d", i+1), "greeting.txt", fmt.Sprintf("Hello from business reload %d\n", i+1))
			s.withinBudget()
			for _, p := range s.pods {
				s.answeredBy(loads[p.Name], p, rev, s.rec.Pod(p.Name).ReadyAt[rev], fmt.Sprintf("reload %d", i+1))
			}
		}
		total := 0
		for _, p := range s.pods {
			sent, answered, err := loads[p.Name].Stop()
			total += answered
			Expect(err).NotTo(HaveOccurred(), "pod %s's clients: a message lost or answered twice, or a connection dropped", p.Name)
			Expect(answered).To(Equal(sent), "pod %s's clients: messages answered", p.Name)
		}
		logf("%d WebSocket clients: %d messages answered, each once, on their first connections", gatewayClients, total)
	})
})

// brokenBusiness tries business code whose workers exit at start: the
// first pod's reload fails and its agent rolls back, no other pod is sent
// the revision, and that pod's clients are answered by the good revision
// within seeNewCode of its return to it. The code is repaired (in s.app)
// for the next change; business is the good business code.
func (s *suite) brokenBusiness(loads map[string]*local.GatewayLoad, business string) {
	GinkgoHelper()
	good := s.currentRevision()
	bad := s.setCodeNoWait("business.py", local.BrokenBusiness+business)
	tried := s.rolledBack(good, bad)
	Expect(tried).To(HaveLen(1), "pods sent the broken revision, want exactly one\n%s", s.describePods())
	for _, p := range s.pods {
		if slices.Contains(tried, p.Name) {
			s.answeredBy(loads[p.Name], p, good, s.rec.Pod(p.Name).ReadyAt[good], "the rollback of "+bad)
		}
	}
	s.app["business.py"] = business
}

// answeredBy checks that pod p's clients (load) are answered by rev within
// seeNewCode of t, when p was seen Ready at rev (gatewaycheck.AnsweredBy).
func (s *suite) answeredBy(load *local.GatewayLoad, p *local.Pod, rev string, t time.Time, what string) {
	GinkgoHelper()
	Expect(t).NotTo(BeZero(), "pod %s: when it was seen Ready at %s\n%s", p.Name, rev, s.describePods())
	slowest := gatewaycheck.AnsweredBy(load.Clients, gatewaycheck.At(t), rev, seeNewCode, what)
	logf("pod %s, %s: every client answered by %s within %v of the pod's reload", p.Name, what, rev, slowest)
}

// setCode sets one file of the code ConfigMap, waits until every pod runs
// the revision the pool makes of it, and returns that revision.
func (s *suite) setCode(what, file, content string) string {
	GinkgoHelper()
	rev := s.setCodeNoWait(file, content)
	s.waitRolledOut(what+" (revision "+rev+")", rev)
	return rev
}

// setCodeNoWait sets one file of the code ConfigMap and returns the
// revision the pool makes of it (poolrevision.Hash, as the controller
// names it), known or new.
func (s *suite) setCodeNoWait(file, content string) string {
	GinkgoHelper()
	s.writeCode(file, content)
	code := &corev1.ConfigMap{}
	s.must(s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: local.ExampleCode}, code))
	return poolrevision.Hash(poolrevision.SpecOf(s.pool()), poolrevision.CodeOf(code))
}
