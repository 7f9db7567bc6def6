package e2e

import (
	"errors"
	"fmt"
	"maps"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/poolrevision"
	testsuite "github.com/softreload/softreload/internal/testing/suite"
)

const (
	// gatewayClients is how many WebSocket clients this container adds,
	// spread over the three pods' gateways (issue 15).
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
	// brokenBusiness, put before the business code, makes its workers exit
	// at start.
	brokenBusiness = "raise SystemExit('this revision is broken on purpose')\n"
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
	bad := s.setCodeNoWait("business.py", brokenBusiness+business)
	waitFor("the pool turns Degraded", rolloutTimeout, func() (bool, string) {
		pool, desc := getPool(s.ctx, s.c, s.ns)
		if pool == nil {
			return false, desc
		}
		d := meta.FindStatusCondition(pool.Status.Conditions, v1alpha1.ConditionDegraded)
		return d != nil && d.Status == metav1.ConditionTrue && d.Reason == v1alpha1.ReasonReloadFailed, desc
	})
	waitFor("every pod serves the good revision", rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			v := s.rec.Pod(p.Name)
			if v.Desired != good || v.Report.State != v1alpha1.AgentReady || v.Report.Revision != good {
				return false, s.describePods()
			}
		}
		return true, ""
	})
	var tried []string
	for _, p := range s.pods {
		if s.rec.TimesAsked(p.Name, bad) > 0 {
			tried = append(tried, p.Name)
			s.answeredBy(loads[p.Name], p, good, s.rec.Pod(p.Name).ReadyAt[good], "the rollback of "+bad)
		}
	}
	Expect(tried).To(HaveLen(1), "pods sent the broken revision, want exactly one\n%s", s.describePods())
	s.app["business.py"] = business
}

// answeredBy waits until every client of load (pod p's) has an answer to a
// message sent at or after t, when p was seen Ready at rev, and checks that
// each is from rev and came within seeNewCode of t.
func (s *suite) answeredBy(load *local.GatewayLoad, p *local.Pod, rev string, t time.Time, what string) {
	GinkgoHelper()
	Expect(t).NotTo(BeZero(), "pod %s: when it was seen Ready at %s\n%s", p.Name, rev, s.describePods())
	var first []local.GatewayAnswer
	Eventually(func() error {
		if err := load.Err(); err != nil {
			return StopTrying(fmt.Sprintf("pod %s's clients: a message lost or answered twice, or a connection dropped", p.Name)).Wrap(err)
		}
		var ok bool
		if first, ok = load.FirstSince(t); !ok {
			return errors.New("not every client has an answer yet")
		}
		return nil
	}).WithTimeout(time.Minute).Should(Succeed(), "pod %s's clients: an answer to a message sent after %s", p.Name, what)
	var slowest time.Duration
	for i, a := range first {
		Expect(local.AnswerRevision(a.Text)).To(Equal(rev), "pod %s, client %d: its first answer after %s: %q", p.Name, i, what, a.Text)
		Expect(a.At.Sub(t)).To(BeNumerically("<=", seeNewCode), "pod %s, client %d: answered by %s %v after %s", p.Name, i, rev, a.At.Sub(t), what)
		slowest = max(slowest, a.At.Sub(t))
	}
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
