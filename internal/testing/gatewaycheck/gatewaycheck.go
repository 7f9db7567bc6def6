// Package gatewaycheck checks, for the specs of the gateway pattern, what
// its WebSocket clients rely on through a reload of the business group:
// each keeps its connection, no message is lost or answered twice, and the
// first message sent after the reload is answered by the new code, soon;
// and, for the walkthrough's pods, that a pod answers by the code of a
// revision.
package gatewaycheck

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/local"
)

// timeout bounds the wait for one client's answer; a loaded machine is
// slow, not failing.
const timeout = time.Minute

// AnsweredBy waits until each client has an answer to a message sent at or
// after since(client), when its gateway's pod was seen ready at revision
// rev, and checks that this first answer is rev's (local.AnswerRevision)
// and came within within of since(client). A client that ended with an
// error (a message lost or answered twice, its connection dropped) fails
// at once. It returns the slowest switch to rev.
func AnsweredBy(clients []*local.GatewayClient, since func(*local.GatewayClient) time.Time, rev string, within time.Duration, what string) (slowest time.Duration) {
	ginkgo.GinkgoHelper()
	for _, c := range clients {
		t := since(c)
		gomega.Expect(t).NotTo(gomega.BeZero(), "%s: when its gateway's pod was seen ready at %s", c, rev)
		var first local.GatewayAnswer
		gomega.Eventually(func() error {
			if err := c.Err(); err != nil {
				return gomega.StopTrying(c.String() + ": a message lost or answered twice, or its connection dropped").Wrap(err)
			}
			var ok bool
			if first, ok = c.FirstSince(t); !ok {
				return errors.New("no answer yet")
			}
			return nil
		}).WithTimeout(timeout).Should(gomega.Succeed(), "%s: an answer to a message sent after %s", c, what)
		gomega.Expect(local.AnswerRevision(first.Text)).To(gomega.Equal(rev), "%s: its first answer after %s: %q", c, what, first.Text)
		took := first.At.Sub(t)
		gomega.Expect(took).To(gomega.BeNumerically("<=", within), "%s: answered by %s %v after %s", c, rev, took, what)
		slowest = max(slowest, took)
	}
	return slowest
}

// At is a since for AnsweredBy: the same time t for every client.
func At(t time.Time) func(*local.GatewayClient) time.Time {
	return func(*local.GatewayClient) time.Time { return t }
}

// Answers checks that the walkthrough's pod (examples/kubernetes) answers
// with the greeting, from revision rev: to a message on the WebSocket
// connection gw has held, with no new connection, and over HTTP at web,
// four times, most likely by every web worker.
func Answers(pod string, gw *local.Gateway, web, rev, greeting string) {
	ginkgo.GinkgoHelper()
	answer, err := gw.Ask("which revision?")
	gomega.Expect(err).NotTo(gomega.HaveOccurred(), "pod %s: a message on the gateway's open connection", pod)
	gomega.Expect(answer).To(gomega.Equal(fmt.Sprintf("%s (revision %s): which revision?", greeting, rev)), "pod %s: the gateway's answer, by the business workers", pod)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	want := fmt.Sprintf("%s (revision %s)\n", greeting, rev)
	for range 4 {
		resp, err := c.Get("http://" + web + "/")
		gomega.Expect(err).NotTo(gomega.HaveOccurred(), "pod %s", pod)
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		gomega.Expect(err).NotTo(gomega.HaveOccurred(), "pod %s's answer", pod)
		gomega.Expect(string(body)).To(gomega.Equal(want), "pod %s's answer", pod)
	}
}
