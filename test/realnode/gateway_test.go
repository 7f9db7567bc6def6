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
)

const (
	// service is the walkthrough's Service in front of the pods.
	service = "hello"
	// serviceClients is how many WebSocket clients talk to the gateways
	// through the Service, as issue 15's scenario says.
	serviceClients = 20
	// clientPause is each client's pause between an answer and its next
	// message.
	clientPause = 100 * time.Millisecond
)

// startServiceClients connects serviceClients WebSocket clients to the
// Service's gateway port from the test's network namespace (kube-proxy
// sends each connection to one pod's gateway) and starts them sending.
func (s *suite) startServiceClients() {
	GinkgoHelper()
	svc, err := s.kube.CoreV1().Services(namespace).Get(s.ctx, service, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred(), "the walkthrough's Service %s", service)
	Expect(svc.Spec.ClusterIP).NotTo(BeEmpty(), "Service %s has no ClusterIP", service)
	addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(local.ExampleGWPort))
	s.ws, err = local.StartGatewayLoad([]string{addr}, serviceClients, clientPause)
	Expect(err).NotTo(HaveOccurred(), "WebSocket clients through Service %s at %s", service, addr)
	// A failed step leaves them running: the suite's stop ends them.
	Eventually(s.ws.LastRevisions).WithTimeout(time.Minute).WithPolling(poll).
		Should(HaveEach(Not(BeEmpty())), "every client through Service %s is answered", service)
}

// serviceClientsAt checks that no client through the Service has lost a
// message or its connection, and that every one is answered by revision
// rev's code on the connection it opened at the start.
func (s *suite) serviceClientsAt(rev string) {
	GinkgoHelper()
	Expect(s.ws).NotTo(BeNil(), "the WebSocket clients through the Service were not started")
	Eventually(func(g Gomega) {
		g.Expect(s.ws.Err()).NotTo(HaveOccurred(), "WebSocket clients through the Service: a message lost or answered twice, or a connection dropped")
		g.Expect(s.ws.LastRevisions()).To(HaveEach(Equal(rev)), "the revision of each client's last answer, on its first connection")
	}).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed())
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
