// Command manager runs softreload's controllers and its injection webhook:
// the WorkerPool reconciler that rolls revisions over the pods, the
// reconciler that keeps each namespace's agent rights in step, and the
// webhook that puts the agent into governed pods.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/controllers"
	"github.com/softreload/softreload/internal/injection"
)

// leaderElectionID names the Lease the replicas compete for.
const leaderElectionID = "softreload-manager.softreload.dev"

// options are the manager's flags.
type options struct {
	metricsAddr, probeAddr string
	leaderElect            bool
	webhook                bool
	webhookPort            int
	certDir                string
	certMode               injection.CertMode
	agentImage             string
	waitForWebhook         time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint; 0 turns it off.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; 0 turns them off.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader among the replicas, so that one reconciles at a time.")
	flag.BoolVar(&o.webhook, "webhook", true, "Serve the injection webhook; false runs the controllers alone (pods then need the agent by other means).")
	flag.IntVar(&o.webhookPort, "webhook-port", 9443, "Port of the injection webhook's server.")
	flag.StringVar(&o.certDir, "webhook-cert-dir", "/tmp/k8s-webhook-server/serving-certs", "Directory of the webhook's tls.crt and tls.key.")
	flag.StringVar((*string)(&o.certMode), "webhook-cert-mode", string(injection.CertModeSelf), "Who provides the webhook's certificate: self or cert-manager.")
	flag.StringVar(&o.agentImage, "agent-image", "", "Image the webhook copies the agent binary from.")
	flag.DurationVar(&o.waitForWebhook, "wait-for-webhook", 0, "Instead of running the manager, wait up to this long until the API server calls the injection webhook (a dry-run pod in POD_NAMESPACE, run as POD_SERVICE_ACCOUNT), then exit: the chart's post-install hook.")
	klog.InitFlags(nil)
	flag.Parse()
	ctrl.SetLogger(klog.NewKlogr())

	if err := run(o); err != nil {
		klog.ErrorS(err, "Manager stopped")
		os.Exit(1)
	}
}

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(workersv1alpha1.AddToScheme(scheme))
}

func run(o options) error {
	if o.waitForWebhook > 0 {
		return runWaitForWebhook(o.waitForWebhook)
	}
	if o.webhook && o.agentImage == "" {
		return errors.New("--agent-image is required while the webhook runs: it copies the agent out of that image into every pod (--webhook=false runs the controllers alone)")
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("reading the kubeconfig: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, managerOptions(o))
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	events := mgr.GetEventRecorder("softreload")
	if err := controllers.NewWorkerPoolReconciler(mgr.GetClient(), events, clock.RealClock{}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the WorkerPool controller: %w", err)
	}
	if err := controllers.NewAgentAccessReconciler(mgr.GetClient()).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the agent access controller: %w", err)
	}
	if o.webhook {
		if err := injection.Setup(mgr, injection.SetupOptions{
			Options:   injection.Options{AgentImage: o.agentImage},
			CertMode:  o.certMode,
			CertDir:   o.certDir,
			Namespace: os.Getenv("POD_NAMESPACE"),
		}); err != nil {
			return fmt.Errorf("setting up the injection webhook: %w", err)
		}
	}

	// With the webhook, readiness also waits for it to serve with its
	// certificate (injection.ReadyzCheckName, added by injection.Setup).
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("adding the readiness check: %w", err)
	}
	klog.InfoS("Starting the manager", "leaderElection", o.leaderElect, "metrics", o.metricsAddr, "webhook", o.webhook, "webhookCertMode", o.certMode)
	return mgr.Start(ctrl.SetupSignalHandler())
}

// managerOptions are the manager's options for the flags o. The cache holds
// only what softreload governs (controllers.CacheOptions): the pods labelled
// for a pool, the revision snapshots without their files, the agents' Role
// and RoleBinding, and every WorkerPool.
func managerOptions(o options) ctrl.Options {
	return ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
		LeaderElection:         o.leaderElect,
		LeaderElectionID:       leaderElectionID,
		WebhookServer:          webhook.NewServer(webhook.Options{Port: o.webhookPort, CertDir: o.certDir}),
		Cache:                  controllers.CacheOptions(),
	}
}

// runWaitForWebhook is --wait-for-webhook.
func runWaitForWebhook(timeout time.Duration) error {
	namespace, account := os.Getenv("POD_NAMESPACE"), os.Getenv("POD_SERVICE_ACCOUNT")
	if namespace == "" || account == "" {
		return errors.New("--wait-for-webhook needs POD_NAMESPACE and POD_SERVICE_ACCOUNT: the probe pod is created (as a dry run) in that namespace, as that service account")
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("reading the kubeconfig: %w", err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating a client: %w", err)
	}
	return waitForWebhook(ctrl.SetupSignalHandler(), c, namespace, account, timeout)
}
