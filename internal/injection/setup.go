package injection

import (
	"fmt"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
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
// one webhook configuration).

// Setup serves the injector on the manager's webhook server. In self mode it
// first adds the certificate rotator, and registers the handler once a
// certificate is in place; the webhook server does not answer before then.
func Setup(mgr ctrl.Manager, opts SetupOptions) error {
	switch opts.CertMode {
	case CertModeSelf, "", CertModeCertManager:
	default:
		return fmt.Errorf("unknown webhook certificate mode %q: want %q or %q", opts.CertMode, CertModeSelf, CertModeCertManager)
	}
	injector := NewInjector(mgr.GetClient(), admission.NewDecoder(mgr.GetScheme()), opts.Options)
	if opts.CertMode == CertModeCertManager {
		injector.Register(mgr.GetWebhookServer())
		return nil
	}
	if opts.Namespace == "" {
		return fmt.Errorf("self-managed webhook certificates need the manager's namespace (POD_NAMESPACE)")
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
	}()
	return nil
}
