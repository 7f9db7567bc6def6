package main

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/testing/suite"
)

// --wait-for-webhook on a real API server whose webhook configuration points
// at a webhook server on loopback: it waits while the API server cannot call
// the webhook, and returns once it can.
var _ = Describe("waiting for the webhook", Ordered, Label(suite.ControlPlane), func() {
	var (
		ctx context.Context
		ns  = "softreload-system"
	)
	const account = "softreload-webhook-check"

	BeforeAll(func() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)
		Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: account, Namespace: ns}})).To(Succeed())
	})

	It("waits while the API server cannot call the webhook, and returns once it can", func() {
		err := webhookCalled(ctx, env.Client, ns, account)
		Expect(err).To(MatchError(ContainSubstring("failed calling webhook")), "no webhook server runs yet")

		done := make(chan error, 1)
		go func() { done <- waitForWebhook(ctx, env.Client, ns, account, 2*time.Minute) }()
		Consistently(done, 2*time.Second).ShouldNot(Receive(), "returned while the webhook cannot be called")

		wio := env.Environment().WebhookInstallOptions
		server := webhook.NewServer(webhook.Options{Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir})
		injection.NewInjector(env.Client, admission.NewDecoder(env.Scheme), injection.Options{AgentImage: "registry.example/agent:v1"}).Register(server)
		serving, stopServing := context.WithCancel(ctx)
		stopped := make(chan error, 1)
		go func() { stopped <- server.Start(serving) }()
		DeferCleanup(func() { // the address is free for the next spec
			stopServing()
			Eventually(stopped, time.Minute).Should(Receive())
		})

		Eventually(done, time.Minute).Should(Receive(BeNil()))
		Expect(webhookCalled(ctx, env.Client, ns, account)).To(Succeed())
	})

	It("gives up after its timeout with the API server's last answer", func() {
		err := waitForWebhook(ctx, env.Client, "nowhere", account, 2*time.Second)
		Expect(err).To(MatchError(ContainSubstring("did not call webhook " + injection.WebhookName)))
		Expect(err).To(MatchError(ContainSubstring(`namespaces "nowhere" not found`)))
	})
})
