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
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/loopback"
)

// TestSelfManagedCertificate runs the manager's webhook setup in self mode on
// a real API server: it must make a certificate, keep it in its Secret, put
// its CA into the webhook configuration, and serve with a certificate that
// the API server, holding that CA, accepts for the webhook Service's name.
func TestSelfManagedCertificate(t *testing.T) {
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Client
	const ns = "softreload-system"

	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	// The install ships the Secret empty; the rotator fills it.
	must(t, c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: injection.CertSecretName, Namespace: ns}}))
	must(t, c.Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: injection.WebhookConfigurationName},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "inject.softreload.dev",
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
				Namespace: ns, Name: injection.ServiceName, Path: ptr.To(injection.Path),
			}},
			// Matches nothing here: the configuration is only where the CA goes.
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"never": "matches"}},
		}},
	}))

	port, probePort := loopback.FreePort(t), loopback.FreePort(t)
	probeAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(probePort))
	certDir := t.TempDir()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: probeAddr,
		WebhookServer: webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: certDir}),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = injection.Setup(mgr, injection.SetupOptions{
		Options: injection.Options{AgentImage: agentImage}, CertMode: injection.CertModeSelf, CertDir: certDir, Namespace: ns,
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := mgr.Start(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("the manager stopped: %v", err)
		}
	}()

	var caBundle []byte
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
		if err := c.Get(ctx, types.NamespacedName{Name: injection.WebhookConfigurationName}, mwc); err != nil {
			return false, err
		}
		caBundle = mwc.Webhooks[0].ClientConfig.CABundle
		return len(caBundle) > 0, nil
	})
	if err != nil {
		t.Fatalf("the CA bundle never reached the webhook configuration: %v", err)
	}
	// The certificate is made but not yet where the server reads it: the
	// manager must not say it is ready.
	code, body := waitReadyzAnswers(ctx, t, probeAddr)
	if code == http.StatusOK {
		t.Fatalf("readyz answered 200 before the webhook server has a certificate: %s", body)
	}
	if !strings.Contains(body, injection.ReadyzCheckName) {
		t.Fatalf("readyz answered %d without naming the %q check: %s", code, injection.ReadyzCheckName, body)
	}

	secret := &corev1.Secret{}
	must(t, c.Get(ctx, types.NamespacedName{Namespace: ns, Name: injection.CertSecretName}, secret))
	if len(secret.Data["tls.crt"]) == 0 || len(secret.Data["tls.key"]) == 0 {
		t.Fatalf("secret %s holds no certificate: keys %v", injection.CertSecretName, keys(secret.Data))
	}

	// In a cluster the kubelet mounts the Secret at the cert directory; here
	// the test does what the kubelet would.
	for _, name := range []string{"tls.crt", "tls.key"} {
		must(t, os.WriteFile(filepath.Join(certDir, name), secret.Data[name], 0o600))
	}

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caBundle) {
		t.Fatalf("the CA bundle is not PEM: %q", caBundle)
	}
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		code, body = readyz(ctx, probeAddr)
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("readyz never answered 200 once the certificate was in place: %d %s", code, body)
	}

	// Ready means the API server, holding the configuration's CA, can call
	// the injector now: no retry.
	serverName := injection.ServiceName + "." + ns + ".svc"
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: serverName}}}
	resp, err := hc.Post("https://"+net.JoinHostPort("127.0.0.1", fmt.Sprint(port))+injection.Path, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("ready, but the webhook server does not serve a certificate valid for %s under the injected CA: %v", serverName, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		t.Fatalf("ready, but the webhook server does not serve %s", injection.Path)
	}
}

// readyz returns the manager's readiness answer, or 0 when it does not
// answer.
func readyz(ctx context.Context, addr string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz?verbose", nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReadyzAnswers waits until the manager's probe server answers at all.
func waitReadyzAnswers(ctx context.Context, t *testing.T, addr string) (code int, body string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		code, body = readyz(ctx, addr)
		return code != 0, nil
	})
	if err != nil {
		t.Fatalf("the probe server at %s never answered: %s", addr, body)
	}
	return code, body
}

func TestSetupRefusesUnknownCertMode(t *testing.T) {
	err := injection.Setup(nil, injection.SetupOptions{CertMode: "vault"})
	if err == nil || err.Error() != `unknown webhook certificate mode "vault": want "self" or "cert-manager"` {
		t.Fatalf("got %v, want the unknown mode named", err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
