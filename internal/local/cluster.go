package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/procstat"
	"github.com/softreload/softreload/internal/testing/envtest"
)

// Options configure a Cluster. Zero values mean the defaults.
type Options struct {
	// Dir holds everything the cluster writes: binaries, kubeconfigs, the
	// pods' code and logs. Required.
	Dir string
	// Namespace is where the pods and the pool live ("default").
	Namespace string
	// ServiceAccount is the pods' service account ("app").
	ServiceAccount string
	// Output receives the manager's and the agents' logs, prefixed; they
	// always go to files in Dir/logs too.
	Output io.Writer
}

// Cluster is a control plane, a manager and agent pods on this machine.
type Cluster struct {
	opts   Options
	env    *envtest.Env
	root   string
	bin    string
	client client.Client
	kube   kubernetes.Interface

	closers []io.Closer

	mu         sync.Mutex
	manager    *process
	apiStopped chan struct{} // closed once a stopped API server has exited
	pods       map[string]*Pod
}

// process is a started command; done is closed once it has exited.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// Pod is an agent pod: a Pod object and the agent process that serves it.
type Pod struct {
	Name string
	// PortOffset is added to every tcp port of the pool: the pod's agent
	// binds port+PortOffset on 127.0.0.1, so that pods on one machine do
	// not collide, as pods with IPs of their own would not.
	PortOffset int
	CodeDir    string

	kubeconfig, pool string
	proc             *process // guarded by Cluster.mu
}

// Addr is where the pod serves the pool's tcp port.
func (p *Pod) Addr(port int) string {
	return net.JoinHostPort(ListenHost, strconv.Itoa(port+p.PortOffset))
}

// ListenHost is the address every agent pod binds its tcp ports on.
const ListenHost = "127.0.0.1"

// Start builds the binaries, starts the control plane, installs what an
// install would (the CRD, the agents' admission policy), and creates the
// namespace. It does not start the manager or any pod.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("local: Options.Dir is required")
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.ServiceAccount == "" {
		opts.ServiceAccount = "app"
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	root, err := envtest.RepoRoot()
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, root: root, bin: filepath.Join(opts.Dir, "bin"), pods: map[string]*Pod{}}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "apiserver"), 0o700); err != nil {
		return nil, err
	}
	if err := c.build(ctx); err != nil {
		return nil, err
	}
	apiLog, err := c.logFile("apiserver")
	if err != nil {
		return nil, err
	}
	c.closers = append(c.closers, apiLog)
	if c.env, err = envtest.Start(envtest.Options{APIServerDir: filepath.Join(opts.Dir, "apiserver"), APIServerOutput: apiLog}); err != nil {
		return nil, err
	}
	c.client = c.env.Client
	c.kube = kubernetes.NewForConfigOrDie(c.env.Config)
	if err := c.install(ctx); err != nil {
		_ = c.Stop()
		return nil, err
	}
	if err := c.writeKubeconfig(c.KubeconfigPath(), c.env.Config); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// Client is an administrator's client.
func (c *Cluster) Client() client.Client { return c.client }

// Config reaches the API server as an administrator.
func (c *Cluster) Config() *rest.Config { return c.env.Config }

// Namespace is where the pods live.
func (c *Cluster) Namespace() string { return c.opts.Namespace }

// KubeconfigPath is an administrator's kubeconfig, for kubectl.
func (c *Cluster) KubeconfigPath() string { return filepath.Join(c.opts.Dir, "kubeconfig") }

// Dir holds everything the cluster writes (Options.Dir); its logs are in
// Dir/logs.
func (c *Cluster) Dir() string { return c.opts.Dir }

// BinDir holds the binaries built for the cluster: manager, agent and
// kubectl-softreload (the kubectl plugin).
func (c *Cluster) BinDir() string { return c.bin }

// Kubectl is the kubectl that hack/ built, next to the API server.
func (c *Cluster) Kubectl() string {
	return filepath.Join(c.env.Environment().BinaryAssetsDirectory, "kubectl")
}

// build builds the binaries, the agent with the softreload_local tag: only
// that agent reads SOFTRELOAD_LISTEN_HOST and SOFTRELOAD_PORT_OFFSET
// (cmd/agent/local.go), which keep the pods of one machine apart.
func (c *Cluster) build(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "softreload_local", "-o", c.bin+string(filepath.Separator), "./cmd/manager", "./cmd/agent", "./cmd/kubectl-softreload")
	cmd.Dir = c.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the manager, the agent and the kubectl plugin: %w\n%s", err, out)
	}
	return nil
}

// install applies what an install of softreload puts into a cluster
// besides the manager: the admission policy that confines each agent to
// its own pod. (envtest has already installed the CRD.)
func (c *Cluster) install(ctx context.Context) error {
	f, err := os.Open(filepath.Join(c.root, "config", "policy", "agent-pod-policy.yaml"))
	if err != nil {
		return err
	}
	defer f.Close()
	decoder := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := decoder.Decode(&obj.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("reading the admission policy: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := c.client.Create(ctx, obj); err != nil {
			return fmt.Errorf("installing %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	if c.opts.Namespace != "default" {
		err := c.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.opts.Namespace}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	_, err = c.kube.CoreV1().ServiceAccounts(c.opts.Namespace).Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: c.opts.ServiceAccount}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// StartManager starts the manager process (the controllers, without the
// webhook: no kubelet here creates pods through it).
func (c *Cluster) StartManager() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.manager != nil {
		return errors.New("local: the manager is running already")
	}
	cmd := exec.Command(filepath.Join(c.bin, "manager"),
		"--kubeconfig", c.KubeconfigPath(),
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--webhook=false")
	proc, err := c.startLogged(cmd, "manager")
	if err != nil {
		return err
	}
	c.manager = proc
	return nil
}

// KillManager kills the manager with SIGKILL, as a crash or an evicted
// node would: it has no chance to tidy up.
func (c *Cluster) KillManager() error {
	c.mu.Lock()
	proc := c.manager
	c.manager = nil
	c.mu.Unlock()
	if proc == nil {
		return errors.New("local: the manager is not running")
	}
	_ = proc.cmd.Process.Kill()
	<-proc.done
	return nil
}

// AddPod creates a Pod object with labels and starts its agent, which binds
// the pool's tcp ports plus portOffset on 127.0.0.1. The label
// softreload.dev/pool names the pod's WorkerPool.
func (c *Cluster) AddPod(ctx context.Context, name string, portOffset int, labels map[string]string) (*Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.opts.Namespace, Labels: labels},
		Spec: corev1.PodSpec{
			ServiceAccountName: c.opts.ServiceAccount,
			Containers:         []corev1.Container{{Name: "app", Image: "local/agent"}},
		},
	}
	if err := c.client.Create(ctx, pod); err != nil {
		return nil, fmt.Errorf("creating pod %s: %w", name, err)
	}
	token, err := c.kube.CoreV1().ServiceAccounts(c.opts.Namespace).CreateToken(ctx, c.opts.ServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: &authenticationv1.BoundObjectReference{
			Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token bound to pod %s: %w", name, err)
	}
	podDir := filepath.Join(c.opts.Dir, "pods", name)
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		return nil, err
	}
	agentCfg := rest.AnonymousClientConfig(c.env.Config)
	agentCfg.BearerToken = token.Status.Token
	kubeconfig := filepath.Join(podDir, "kubeconfig")
	if err := c.writeKubeconfig(kubeconfig, agentCfg); err != nil {
		return nil, err
	}
	p := &Pod{Name: name, PortOffset: portOffset, CodeDir: filepath.Join(podDir, "code"),
		kubeconfig: kubeconfig, pool: labels[workersv1alpha1.PoolLabel]}
	proc, err := c.startAgent(p)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	p.proc = proc
	c.pods[name] = p
	c.mu.Unlock()
	return p, nil
}

// startAgent starts the agent process of pod p.
func (c *Cluster) startAgent(p *Pod) (*process, error) {
	defaultSignalsForChildren()
	cmd := exec.Command(filepath.Join(c.bin, "agent"), "pod", "--kubeconfig", p.kubeconfig)
	cmd.Env = append(os.Environ(),
		"POD_NAME="+p.Name,
		"POD_NAMESPACE="+c.opts.Namespace,
		"SOFTRELOAD_POOL="+p.pool,
		"SOFTRELOAD_CODE_ROOT="+p.CodeDir,
		"SOFTRELOAD_LISTEN_HOST="+ListenHost,
		"SOFTRELOAD_PORT_OFFSET="+strconv.Itoa(p.PortOffset),
		// Each pod's unix sockets (the example's gateway talks to its web
		// workers on one) in a directory of its own, as in a pod of its own.
		"SOFTRELOAD_SOCKET_ROOT="+filepath.Join(filepath.Dir(p.CodeDir), "sockets"),
	)
	return c.startLogged(cmd, p.Name)
}

// agentOf returns the running agent process of the named pod.
func (c *Cluster) agentOf(name string) (*Pod, *process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pods[name]
	if p == nil {
		return nil, nil, fmt.Errorf("local: no pod %s", name)
	}
	return p, p.proc, nil
}

// KillAgent kills the agent of the named pod with SIGKILL, as a crash or
// the OOM killer would, and returns once it and its workers have exited.
func (c *Cluster) KillAgent(name string) error {
	_, proc, err := c.agentOf(name)
	if err != nil {
		return err
	}
	// Its workers die with it (the agent starts them with a parent-death
	// signal), a moment later. A container's processes are all gone before
	// the kubelet starts it again, so this waits for them too: a restarted
	// agent would otherwise find its ports still held.
	workers := children(proc.cmd.Process.Pid)
	if err := proc.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("local: killing the agent of pod %s: %w", name, err)
	}
	<-proc.done
	for pid, started := range workers {
		err := wait.PollUntilContextTimeout(context.Background(), 5*time.Millisecond, time.Minute, true,
			func(context.Context) (bool, error) { return !procstat.Runs(pid, started), nil })
		if err != nil {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			return fmt.Errorf("local: the process %d (%s) that the killed agent of pod %s had started still runs:\n%s",
				pid, strings.Join(strings.Fields(strings.ReplaceAll(string(cmdline), "\x00", " ")), " "), name, status)
		}
	}
	return nil
}

// children are the child processes of pid, each with its start time (in
// clock ticks since boot), which tells it from a later process that gets
// its pid.
func children(pid int) map[int]uint64 {
	out := map[int]uint64{}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			child, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if st, err := procstat.Read(child); err == nil && !st.Exited() {
				out[child] = st.StartTime
			}
		}
	}
	return out
}

// RestartAgent starts the agent of the named pod again once it has exited,
// as the kubelet restarts a container: the same pod, token, code directory
// and ports. It does not wait for the API server, which may be down.
func (c *Cluster) RestartAgent(name string) error {
	p, proc, err := c.agentOf(name)
	if err != nil {
		return err
	}
	select {
	case <-proc.done:
	default:
		return fmt.Errorf("local: the agent of pod %s (pid %d) is still running", name, proc.cmd.Process.Pid)
	}
	next, err := c.startAgent(p)
	if err != nil {
		return err
	}
	c.mu.Lock()
	p.proc = next
	c.mu.Unlock()
	return nil
}

// SignalAgent sends sig to the agent process of the named pod (not to its
// workers). SIGSTOP holds the whole agent, its watch and its reports, while
// its workers serve on; SIGCONT lets it go.
func (c *Cluster) SignalAgent(name string, sig os.Signal) error {
	_, proc, err := c.agentOf(name)
	if err != nil {
		return err
	}
	if err := proc.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("local: sending %v to the agent of pod %s: %w", sig, name, err)
	}
	return nil
}

// AgentPID returns the pid of the named pod's agent, and whether that
// process is still running.
func (c *Cluster) AgentPID(name string) (pid int, running bool, err error) {
	_, proc, err := c.agentOf(name)
	if err != nil {
		return 0, false, err
	}
	select {
	case <-proc.done:
		return proc.cmd.Process.Pid, false, nil
	default:
		return proc.cmd.Process.Pid, true, nil
	}
}

// defaultSignalsForChildren makes sure an agent starts, as in a container,
// with SIGHUP at its default action. A process started under nohup ignores
// SIGHUP, and every process it starts inherits that; an ignored signal stays
// ignored through exec, a caught one is reset to the default. So while this
// process ignores SIGHUP, it catches it instead (and still does nothing
// with it).
func defaultSignalsForChildren() {
	hupOnce.Do(func() {
		if signal.Ignored(syscall.SIGHUP) {
			signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
		}
	})
}

var hupOnce sync.Once

// Pods returns the running pods by name.
func (c *Cluster) Pods() map[string]*Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*Pod, len(c.pods))
	for k, v := range c.pods {
		out[k] = v
	}
	return out
}

// StopAPIServer stops the API server (etcd keeps running) until
// StartAPIServer. It returns once the API server refuses connections.
func (c *Cluster) StopAPIServer() error {
	api := c.env.Environment().ControlPlane.APIServer
	addr := api.HostPort() // its secure serving address
	stopped := make(chan struct{})
	c.mu.Lock()
	c.apiStopped = stopped
	c.mu.Unlock()
	go func() {
		// kube-apiserver stops listening at once on SIGTERM, but its
		// process may linger until envtest kills it after its stop
		// timeout; it is stopped either way, hence no error here.
		_ = api.Stop()
		close(stopped)
	}()
	refused := func(context.Context) (bool, error) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true, nil
		}
		conn.Close()
		select {
		case <-stopped:
			return true, nil
		default:
			return false, nil
		}
	}
	return wait.PollUntilContextCancel(context.Background(), 100*time.Millisecond, true, refused)
}

// StartAPIServer starts the stopped API server again, on the same address
// and with the same credentials.
func (c *Cluster) StartAPIServer() error {
	c.mu.Lock()
	stopped := c.apiStopped
	c.apiStopped = nil
	c.mu.Unlock()
	if stopped == nil {
		return errors.New("local: the API server is not stopped")
	}
	<-stopped
	return c.env.Environment().ControlPlane.APIServer.Start()
}

// Stop drains every agent (SIGTERM, as the kubelet would), stops the
// manager and the control plane, and leaves no process behind.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	pods := c.pods
	c.pods = map[string]*Pod{}
	manager := c.manager
	c.manager = nil
	c.mu.Unlock()

	var wg sync.WaitGroup
	c.mu.Lock()
	procs := make([]*process, 0, len(pods))
	for _, p := range pods {
		procs = append(procs, p.proc)
	}
	c.mu.Unlock()
	for _, proc := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			terminate(proc, 30*time.Second)
		}()
	}
	wg.Wait()
	if manager != nil {
		terminate(manager, 10*time.Second)
	}
	var err error
	if c.env != nil {
		err = c.env.Stop()
	}
	for _, cl := range c.closers {
		_ = cl.Close()
	}
	return err
}

// terminate stops p through Terminate; a nil p is nothing to stop.
func terminate(p *process, grace time.Duration) {
	if p != nil {
		Terminate(p.cmd, p.done, grace)
	}
}

// Terminate stops the started cmd, whose done is closed once its Wait has
// returned: SIGTERM (and SIGCONT, should the process be held), then, if it
// has not exited within grace, SIGKILL. It returns once cmd has exited,
// at once if it already had.
func Terminate(cmd *exec.Cmd, done <-chan struct{}, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// startLogged starts cmd with its output in Dir/logs/name.log and, line by
// line with a prefix, in Options.Output.
func (c *Cluster) startLogged(cmd *exec.Cmd, name string) (*process, error) {
	f, err := c.logFile(name)
	if err != nil {
		return nil, err
	}
	w := io.MultiWriter(f, newPrefixWriter(c.opts.Output, name))
	cmd.Stdout, cmd.Stderr = w, w
	// Its own process group, so that a Ctrl-C in a terminal reaches the
	// demo alone, which then drains everything in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// LogPath is the log file of the named process: the manager, the
// apiserver, or a pod (its agent and its workers).
func (c *Cluster) LogPath(name string) string {
	return filepath.Join(c.opts.Dir, "logs", name+".log")
}

// logFile opens Dir/logs/name.log for appending.
func (c *Cluster) logFile(name string) (*os.File, error) {
	logs := filepath.Join(c.opts.Dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(logs, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

func (c *Cluster) writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["local"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
	}
	kc.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "user", Namespace: c.opts.Namespace}
	kc.CurrentContext = "local"
	return clientcmd.WriteToFile(*kc, path)
}
