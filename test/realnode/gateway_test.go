//go:build realnode

package realnode

import (
	"fmt"
	"net"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/gatewaycheck"
)

const (
	// service is the walkthrough's Service in front of the pods.
	service = "hello"
	// serviceClients is how many WebSocket clients talk to the gateways
	// through the Service.
	serviceClients = 20
	// clientPause is each client's pause between an answer and its next
	// message.
	clientPause = 50 * time.Millisecond
	// businessReloads is how many code changes reload the business group
	// under the clients; brokenAfter is the change after which a broken
	// business revision is tried.
	businessReloads = 5
	brokenAfter     = 3
	// seeNewCode is how soon after its pod's reload every client must be
	// answered by the new code.
	seeNewCode = time.Second
)

// gatewayThroughReloads: serviceClients WebSocket clients talk to the
// gateways through the Service while the business group reloads
// businessReloads times and a broken business revision rolls back. No
// connection drops, no message is lost or answered twice, and each
// client's first message after its pod's reload is answered by the new
// code within seeNewCode, on the connection it opened at the start.
func (s *suite) gatewayThroughReloads() {
	GinkgoHelper()
	s.startServiceClients()
	for i := range businessReloads {
		if i == brokenAfter {
			s.brokenBusiness()
		}
		what := fmt.Sprintf("business reload %d", i+1)
		rev, at := s.changeCode(map[string]string{"greeting.txt": fmt.Sprintf("Hello from business reload %d\n", i+1)})
		s.waitRolledOut("the rollout of "+rev, rev)
		s.measured("ConfigMap", what+", 20 WebSocket clients", rev, at)
		s.withinBudget()
		slowest := gatewaycheck.AnsweredBy(s.ws.Clients, s.readyAt(rev), rev, seeNewCode, what)
		fmt.Printf("realnode: %s: every client through Service %s answered by the new code within %v of its pod's reload\n", what, service, slowest.Round(time.Millisecond))
	}
	s.stopServiceClients()
}

// brokenBusiness tries business code whose workers exit at start: one pod
// fails and rolls back, and its clients are answered by the good revision
// within seeNewCode of its return to it. The next change repairs the code.
func (s *suite) brokenBusiness() {
	GinkgoHelper()
	good := s.pool().Status.CurrentRevision
	business := s.app["business.py"]
	rev, tried := s.brokenCode(good, map[string]string{"business.py": local.BrokenBusiness + business}, "broken business.py, rolled back, 20 WebSocket clients")
	var clients []*local.GatewayClient
	for _, c := range s.ws.Clients {
		if c.Host() == tried {
			clients = append(clients, c)
		}
	}
	slowest := gatewaycheck.AnsweredBy(clients, s.readyAt(good), good, seeNewCode, "the rollback of "+rev)
	fmt.Printf("realnode: the broken business revision: %d clients of pod %s answered by the good code within %v of its rollback\n", len(clients), tried, slowest.Round(time.Millisecond))
	s.app["business.py"] = business
}

// readyAt is a since for gatewaycheck.AnsweredBy: when the pod of the
// client's gateway was last seen becoming Ready at rev.
func (s *suite) readyAt(rev string) func(*local.GatewayClient) time.Time {
	return func(c *local.GatewayClient) time.Time { return s.rec.Pod(c.Host()).ReadyAt[rev] }
}

// startServiceClients connects serviceClients WebSocket clients to the
// Service's gateway port from the test's network namespace (kube-proxy
// sends each connection to one pod's gateway, which names its pod in its
// greeting) and starts them sending.
func (s *suite) startServiceClients() {
	GinkgoHelper()
	svc, err := s.kube.CoreV1().Services(namespace).Get(s.ctx, service, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred(), "the walkthrough's Service %s", service)
	Expect(svc.Spec.ClusterIP).NotTo(BeEmpty(), "Service %s has no ClusterIP", service)
	addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(local.ExampleGWPort))
	s.ws, err = local.StartGatewayLoad([]string{addr}, serviceClients, clientPause)
	Expect(err).NotTo(HaveOccurred(), "WebSocket clients through Service %s at %s", service, addr)
	// A failed step leaves them running: the suite's stop ends them.
	perPod := map[string]int{}
	for _, c := range s.ws.Clients {
		Expect(s.pods).To(HaveKey(c.Host()), "%s: the pod its gateway named", c)
		perPod[c.Host()]++
	}
	fmt.Printf("realnode: %d WebSocket clients through Service %s, by pod: %v\n", serviceClients, service, perPod)
	// Twenty connections all on one of the pods would test one pod only.
	Expect(len(perPod)).To(BeNumerically(">", 1), "pods the Service sent the clients to")
	Eventually(func(g Gomega) {
		for _, c := range s.ws.Clients {
			g.Expect(c.Answered()).To(BeNumerically(">", 0), "%s: answers", c)
		}
	}).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed(), "every client through Service %s is answered", service)
}

// stopServiceClients stops the clients through the Service and checks that
// every message they sent was answered, once, on its connection.
func (s *suite) stopServiceClients() {
	GinkgoHelper()
	Expect(s.ws).NotTo(BeNil(), "the WebSocket clients through the Service were not started")
	sent, answered, err := s.ws.Stop()
	s.ws = nil
	Expect(err).NotTo(HaveOccurred(), "WebSocket clients through the Service: a message lost or answered twice, or a connection dropped")
	Expect(answered).To(Equal(sent), "WebSocket clients through the Service: messages answered")
	Expect(answered).To(BeNumerically(">", 0), "WebSocket clients through the Service: messages answered")
	fmt.Printf("realnode: %d WebSocket clients through Service %s: %d messages sent, each answered once, no connection dropped\n", serviceClients, service, sent)
}
