package injection

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// CertMode is who provides the webhook's serving certificate.
type CertMode string

const (
	// CertModeSelf means the manager makes its own CA and serving certificate,
	// keeps them in a Secret, rotates them before they expire and writes the
	// CA into the webhook configuration.
	CertModeSelf CertMode = "self"
	// CertModeCertManager means cert-manager writes the Secret (mounted at the
	// cert directory) and its CA injector fills in the webhook's CA bundle.
	CertModeCertManager CertMode = "cert-manager"
)

// Names of the installed objects the webhook's certificate concerns (see
// config/webhook and the chart).
const (
	// WebhookConfigurationName is the MutatingWebhookConfiguration whose CA
	// bundle the manager keeps in step in self mode.
	WebhookConfigurationName = "softreload-injector"
	// CertSecretName holds the serving certificate. The install ships it
	// empty (the rotator updates it but does not create it).
	CertSecretName = "softreload-webhook-cert"
	// ServiceName is the webhook's Service.
	ServiceName = "softreload-webhook"
	// WebhookName is the injector's entry in the webhook configuration.
	WebhookName = "inject.softreload.dev"
)

// SetupOptions configure the webhook in the manager.
type SetupOptions struct {
	Options
	// CertMode is self (the default) or cert-manager.
	CertMode CertMode
	// CertDir is where the webhook server reads tls.crt and tls.key.
	CertDir string
	// Namespace is the manager's namespace: the Secret and the Service live
	// there.
	Namespace string
}

// The certificate rotator's rights are not in the generated ClusterRole:
// config/rbac grants them narrowly (Secrets in the manager's namespace, the
// one webhook configuration). The readiness check reads the webhook
// configuration in every certificate mode:
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=softreload-injector,verbs=get

// ReadyzCheckName names the manager's readiness check of the webhook.
const ReadyzCheckName = "webhook"

// Setup serves the injector on the manager's webhook server. In self mode it
// first adds the certificate rotator, and registers the handler once a
// certificate is in place; the webhook server does not answer before then.
// In both modes it adds the readiness check ReadyzCheckName, which fails
// until the injector answers with a certificate that the CA bundle of the
// webhook configuration vouches for (see servingCheck).
func Setup(mgr ctrl.Manager, opts SetupOptions) error {
	switch opts.CertMode {
	case CertModeSelf, "", CertModeCertManager:
	default:
		return fmt.Errorf("unknown webhook certificate mode %q: want %q or %q", opts.CertMode, CertModeSelf, CertModeCertManager)
	}
	if opts.Namespace == "" {
		return fmt.Errorf("the webhook needs the manager's namespace (POD_NAMESPACE): its Service and certificate live there")
	}
	// The webhook server starts once something asks for it, and fails
	// without a certificate: in self mode it is asked for once the
	// rotator has put one in place, and the check waits for that too.
	registered := make(chan struct{})
	check := &servingCheck{
		reader: mgr.GetAPIReader(), server: mgr.GetWebhookServer, registered: registered,
		serverName: ServiceName + "." + opts.Namespace + ".svc",
	}
	if err := mgr.AddReadyzCheck(ReadyzCheckName, check.Check); err != nil {
		return fmt.Errorf("adding the webhook's readiness check: %w", err)
	}
	injector := NewInjector(mgr.GetClient(), admission.NewDecoder(mgr.GetScheme()), opts.Options)
	if opts.CertMode == CertModeCertManager {
		injector.Register(mgr.GetWebhookServer())
		close(registered)
		return nil
	}
	ready := make(chan struct{})
	service := ServiceName + "." + opts.Namespace + ".svc"
	err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      types.NamespacedName{Namespace: opts.Namespace, Name: CertSecretName},
		CertDir:        opts.CertDir,
		CAName:         "softreload-ca",
		CAOrganization: "softreload",
		DNSName:        service,
		ExtraDNSNames:  []string{service + ".cluster.local", ServiceName + "." + opts.Namespace},
		IsReady:        ready,
		Webhooks:       []rotator.WebhookInfo{{Name: WebhookConfigurationName, Type: rotator.Mutating}},
		// Every replica serves the webhook, so every replica needs the
		// certificate, leader or not.
		RequireLeaderElection: false,
	})
	if err != nil {
		return fmt.Errorf("adding the webhook certificate rotator: %w", err)
	}
	go func() {
		<-ready
		injector.Register(mgr.GetWebhookServer())
		close(registered)
	}()
	return nil
}

// servingCheck is the manager's readiness check of the webhook: it asks the
// webhook server, as the API server would, to admit a pod, trusting only the
// CA bundle of the webhook configuration and expecting a certificate for the
// webhook Service's name. It passes once the server listens, serves the
// certificate that bundle vouches for, and the injector answers: from then
// on, the API server can call the webhook through any endpoint that lists
// this pod.
type servingCheck struct {
	// reader reads the webhook configuration (uncached: a readiness check
	// reads what is there now).
	reader client.Reader
	// server returns the webhook server; called only once registered is
	// closed (the first call starts the server).
	server     func() webhook.Server
	registered <-chan struct{}
	serverName string
}

// checkTimeout bounds one readiness check's call to the webhook server.
const checkTimeout = 3 * time.Second

// Check returns nil once the webhook serves; otherwise an error that says
// what it still waits for.
func (c *servingCheck) Check(req *http.Request) error {
	select {
	case <-c.registered:
	default:
		return errors.New("the webhook's certificate is not in place yet: the injector is not served")
	}
	addr, err := c.addr()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(req.Context(), checkTimeout)
	defer cancel()
	roots, err := c.trustedCAs(ctx)
	if err != nil {
		return err
	}
	review, err := readinessReview()
	if err != nil {
		return err
	}
	call, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+Path, bytes.NewReader(review))
	if err != nil {
		return fmt.Errorf("building the webhook's readiness request: %w", err)
	}
	call.Header.Set("Content-Type", "application/json")
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: c.serverName, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true,
	}}
	resp, err := hc.Do(call)
	if err != nil {
		return fmt.Errorf("the webhook server at %s does not serve a certificate for %s under the CA bundle of MutatingWebhookConfiguration %s yet: %w",
			addr, c.serverName, WebhookConfigurationName, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("the webhook server at %s does not serve %s", addr, Path)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the webhook server at %s answered %s on %s", addr, resp.Status, Path)
	}
	answer := &admissionv1.AdmissionReview{}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(answer); err != nil {
		return fmt.Errorf("reading the webhook's answer to the readiness request: %w", err)
	}
	if answer.Response == nil || !answer.Response.Allowed {
		return fmt.Errorf("the webhook refused the readiness request's pod: %+v", answer.Response)
	}
	return nil
}

// addr is where the check reaches the webhook server.
func (c *servingCheck) addr() (string, error) {
	server, ok := c.server().(*webhook.DefaultServer)
	if !ok {
		return "", fmt.Errorf("the webhook's readiness check needs controller-runtime's default webhook server, not %T", c.server())
	}
	host, port := server.Options.Host, server.Options.Port
	if host == "" {
		host = "127.0.0.1" // the server listens on every address
	}
	if port == 0 {
		port = webhook.DefaultPort
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// trustedCAs returns the CA bundle the API server trusts for the injector:
// the one in the webhook configuration.
func (c *servingCheck) trustedCAs(ctx context.Context) (*x509.CertPool, error) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.reader.Get(ctx, types.NamespacedName{Name: WebhookConfigurationName}, mwc); err != nil {
		return nil, fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", WebhookConfigurationName, err)
	}
	var bundle []byte
	for _, wh := range mwc.Webhooks {
		if wh.Name == WebhookName {
			bundle = wh.ClientConfig.CABundle
		}
	}
	if len(bundle) == 0 {
		return nil, fmt.Errorf("webhook %s of MutatingWebhookConfiguration %s has no CA bundle yet", WebhookName, WebhookConfigurationName)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return nil, fmt.Errorf("the CA bundle of webhook %s in MutatingWebhookConfiguration %s holds no PEM certificate", WebhookName, WebhookConfigurationName)
	}
	return roots, nil
}

// readinessReview is the admission request the check sends: the creation of
// a pod without the pool label, which the injector admits unchanged.
func readinessReview() ([]byte, error) {
	pod, err := json.Marshal(&corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "softreload-readiness-check"},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the readiness request's pod: %w", err)
	}
	review, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "softreload-readiness-check",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: pod},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the readiness request: %w", err)
	}
	return review, nil
}
