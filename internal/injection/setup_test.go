package injection_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/testing/loopback"
	"github.com/softreload/softreload/internal/testing/suite"
)

// The manager's webhook setup in self mode, on a real API server: it must
// make a certificate, keep it in its Secret, put its CA into the webhook
// configuration, and serve with a certificate that the API server, holding
// that CA, accepts for the webhook Service's name.
var _ = Describe("The self-managed certificate", Label(suite.ControlPlane), func() {
	It("is made, kept, trusted by the webhook configuration and served once ready", func() {
		ctx, cancel := context.WithCancel(context.Background())
		DeferCleanup(cancel)
		c := env.Client
		const ns = "softreload-system"

		Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		// The install ships the Secret empty; the rotator fills it.
		Expect(c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: injection.CertSecretName, Namespace: ns}})).To(Succeed())
		Expect(c.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: injection.WebhookConfigurationName},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    "inject.softreload.dev",
				AdmissionReviewVersions: []string{"v1"},
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
				ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
					Namespace: ns, Name: injection.ServiceName, Path: ptr.To(injection.Path),
				}},
				// Matches nothing here: the configuration is only where the
				// CA goes.
				ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}},
			}},
		})).To(Succeed())

		port, probePort := loopback.FreePort(GinkgoTB()), loopback.FreePort(GinkgoTB())
		probeAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(probePort))
		certDir := GinkgoT().TempDir()
		mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
			Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: probeAddr,
			WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir}),
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(injection.Setup(mgr, injection.SetupOptions{
			Options: injection.Options{AgentImage: agentImage}, CertMode: injection.CertModeSelf, CertDir: certDir, Namespace: ns,
		})).To(Succeed())
		go func() {
			defer GinkgoRecover()
			if err := mgr.Start(ctx); err != nil && ctx.Err() == nil {
				Fail(fmt.Sprintf("the manager stopped: %v", err))
			}
		}()

		var caBundle []byte
		Eventually(func() ([]byte, error) {
			mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := c.Get(ctx, types.NamespacedName{Name: injection.WebhookConfigurationName}, mwc); err != nil {
				return nil, err
			}
			caBundle = mwc.Webhooks[0].ClientConfig.CABundle
			return caBundle, nil
		}).WithTimeout(2*time.Minute).WithPolling(200*time.Millisecond).ShouldNot(BeEmpty(), "the CA bundle never reached the webhook configuration")

		By("not being ready while the certificate is not where the server reads it")
		var answer readyzAnswer
		Eventually(func() int { answer = readyz(ctx, probeAddr)(); return answer.Code }).WithTimeout(time.Minute).WithPolling(100*time.Millisecond).
			ShouldNot(BeZero(), "the probe server at %s never answered", probeAddr)
		Expect(answer.Code).NotTo(Equal(http.StatusOK), "readyz answered 200 before the webhook server has a certificate: %s", answer.Body)
		Expect(answer.Body).To(ContainSubstring(injection.ReadyzCheckName), "readyz answered %d without naming its check", answer.Code)

		secret := &corev1.Secret{}
		Expect(c.Get(ctx, types.NamespacedName{Namespace: ns, Name: injection.CertSecretName}, secret)).To(Succeed())
		Expect(secret.Data).To(HaveKeyWithValue("tls.crt", Not(BeEmpty())), "secret %s holds no certificate", injection.CertSecretName)
		Expect(secret.Data).To(HaveKeyWithValue("tls.key", Not(BeEmpty())), "secret %s holds no key", injection.CertSecretName)

		By("being ready once the certificate is in place")
		// In a cluster the kubelet mounts the Secret at the cert directory;
		// here the test does what the kubelet would.
		for _, name := range []string{"tls.crt", "tls.key"} {
			Expect(os.WriteFile(filepath.Join(certDir, name), secret.Data[name], 0o600)).To(Succeed())
		}
		roots := x509.NewCertPool()
		Expect(roots.AppendCertsFromPEM(caBundle)).To(BeTrue(), "the CA bundle is not PEM: %q", caBundle)
		Eventually(readyz(ctx, probeAddr)).WithTimeout(2*time.Minute).WithPolling(200*time.Millisecond).
			Should(HaveField("Code", http.StatusOK), "readyz never answered 200 once the certificate was in place")

		By("serving, once ready, a certificate the API server trusts under the injected CA, with no retry")
		serverName := injection.ServiceName + "." + ns + ".svc"
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName}}}
		resp, err := hc.Post("https://"+net.JoinHostPort("127.0.0.1", fmt.Sprint(port))+injection.Path, "application/json", strings.NewReader("{}"))
		Expect(err).NotTo(HaveOccurred(), "ready, but the webhook server does not serve a certificate valid for %s under the injected CA", serverName)
		_ = resp.Body.Close()
		Expect(resp.StatusCode).NotTo(Equal(http.StatusNotFound), "ready, but the webhook server does not serve %s", injection.Path)
	})
})

var _ = Describe("Setup", func() {
	It("refuses an unknown certificate mode, naming it", func() {
		Expect(injection.Setup(nil, injection.SetupOptions{CertMode: "vault"})).
			To(MatchError(`unknown webhook certificate mode "vault": want "self" or "cert-manager"`))
	})
})

// readyzAnswer is the manager's readiness answer; Code 0 when it does not
// answer.
type readyzAnswer struct {
	Code int
	Body string
}

// readyz asks the manager at addr whether it is ready.
func readyz(ctx context.Context, addr string) func() readyzAnswer {
	return func() readyzAnswer {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz?verbose", nil)
		if err != nil {
			return readyzAnswer{Body: err.Error()}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return readyzAnswer{Body: err.Error()}
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return readyzAnswer{Code: resp.StatusCode, Body: string(b)}
	}
}
