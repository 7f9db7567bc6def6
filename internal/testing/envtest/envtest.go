package envtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is a client of Config with Scheme.
	Client client.Client
	// Scheme knows the core types and the softreload API.
	Scheme *runtime.Scheme

	env *crenvtest.Environment
}

// Options tune the control plane. The zero value is a plain API server with
// the CRDs installed.
type Options struct {
	// APIServerArgs are extra kube-apiserver flags, as name=value.
	APIServerArgs map[string]string
	// WebhookPaths are files or directories of webhook configurations to
	// install, pointed at a local webhook server; Env.Environment() then
	// says where to serve it (WebhookInstallOptions).
	WebhookPaths []string
	// APIServerDir, if set, holds the API server's certificates and keys
	// (serving, service-account signing). They then outlive a stop of the
	// API server, so that it can start again with every credential it
	// issued still valid.
	APIServerDir string
	// APIServerOutput, if set, receives the API server's log.
	APIServerOutput io.Writer
}

// Start starts a control plane. The caller stops it with Stop.
func Start(opts Options) (*Env, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	assets, err := Assets(root)
	if err != nil {
		return nil, err
	}
	scheme := NewScheme()
	env := &crenvtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
		WebhookInstallOptions: crenvtest.WebhookInstallOptions{Paths: opts.WebhookPaths},
	}
	apiServer := env.ControlPlane.GetAPIServer()
	apiServer.CertDir = opts.APIServerDir
	if opts.APIServerOutput != nil {
		apiServer.Out, apiServer.Err = opts.APIServerOutput, opts.APIServerOutput
	}
	args := apiServer.Configure()
	for name, value := range opts.APIServerArgs {
		args.Set(name, value)
	}
	cfg, err := env.Start()
	if err != nil {
		// Start leaves etcd and the API server running when a later step
		// (installing the CRDs) fails.
		_ = env.Stop()
		return nil, fmt.Errorf("starting the envtest control plane from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("creating a client: %w", err)
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, env: env}, nil
}

// Stop stops the control plane.
func (e *Env) Stop() error { return e.env.Stop() }

// AgentReport returns a function, for Eventually, that reads the report
// the agent of pod name in namespace ns publishes in the pod's status
// annotation; a pod without one reports the zero status.
func (e *Env) AgentReport(ctx context.Context, ns, name string) func() (workersv1alpha1.AgentStatus, error) {
	return func() (workersv1alpha1.AgentStatus, error) {
		pod := &corev1.Pod{}
		if err := e.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
			return workersv1alpha1.AgentStatus{}, fmt.Errorf("reading pod %s/%s: %w", ns, name, err)
		}
		st, err := workersv1alpha1.ParseAgentStatus(pod.Annotations[workersv1alpha1.StatusAnnotation])
		if err != nil || st == nil {
			return workersv1alpha1.AgentStatus{}, err
		}
		return *st, nil
	}
}

// Environment is controller-runtime's envtest environment behind Env, for
// adding users and reading the control plane's endpoints.
func (e *Env) Environment() *crenvtest.Environment { return e.env }

// NewScheme returns a scheme with the core types and the softreload API.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := workersv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// Assets returns the directory that holds kube-apiserver, etcd and kubectl:
// KUBEBUILDER_ASSETS when set (make test sets it), otherwise whatever
// hack/tools.sh builds or has cached.
func Assets(root string) (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "hack", "tools.sh"), "--assets")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/tools.sh --assets: %w: %s", err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// RepoRoot returns the root of the repository this file is in.
func RepoRoot() (string, error) {
	_, file, _, ok := goruntime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot find the source file of the envtest harness")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", filepath.Dir(file))
		}
		dir = parent
	}
}
