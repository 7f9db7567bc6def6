package injection_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
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

	port := loopback.FreePort(t)
	certDir := t.TempDir()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme: env.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
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
	go func() { _ = mgr.Start(ctx) }()

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
	serverName := injection.ServiceName + "." + ns + ".svc"
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), &tls.Config{RootCAs: roots, ServerName: serverName})
		if err != nil {
			return false, nil //nolint:nilerr // not serving yet: poll again
		}
		return true, conn.Close()
	})
	if err != nil {
		t.Fatalf("the webhook server never served a certificate valid for %s under the injected CA: %v", serverName, err)
	}
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
