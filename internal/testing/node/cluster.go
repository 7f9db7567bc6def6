package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Addresses of the cluster, all inside the test's network namespace.
const (
	// NodeName is the node's name.
	NodeName = "realnode"
	// NodeIP is the node's address, held by the empty bridge nodeBridge:
	// the kubelet refuses a loopback one.
	NodeIP     = "10.200.0.1"
	nodeBridge = "srnode0"
	// PodSubnet is where the CNI bridge plugin places the pods.
	PodSubnet = "10.88.0.0/16"
	cniBridge = "srcni0"
	// ServiceSubnet holds the Services' ClusterIPs; the kubernetes
	// Service is its first address.
	ServiceSubnet = "10.96.0.0/16"
	apiServiceIP  = "10.96.0.1"
	apiPort       = 6443
)

// Binaries the cluster runs, by name; Options.Binaries says where each
// is. containerd, ctr, runc, the CNI plugins (/usr/lib/cni), iptables and
// ip come from the system.
var Binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// Options say what the cluster runs.
type Options struct {
	// Dir is the state directory: every file of the cluster and the logs
	// of every process (Dir/logs). Empty means Dir().
	Dir string
	// Binaries maps each name of Binaries to its path.
	Binaries map[string]string
	// Images are OCI archives imported into containerd before the kubelet
	// starts.
	Images []string
	// SandboxImage is containerd's sandbox_image, one of Images.
	SandboxImage string
	// Timeout bounds each part's start (default 2 minutes).
	Timeout time.Duration
}

// Cluster is a running one-node cluster.
type Cluster struct {
	opts  Options
	dir   string
	pki   *pki
	procs []*process
	cfg   *rest.Config
	kube  kubernetes.Interface
}

// Start brings the cluster up, each part once its health endpoint answers,
// and returns when the node is Ready and kube-proxy serves. It must run
// inside the namespaces Main makes. On error, what started is stopped.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if Dir() == "" {
		return nil, errors.New("the cluster runs only inside the namespaces node.Main makes (call it from TestMain)")
	}
	if opts.Dir == "" {
		opts.Dir = Dir()
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	for _, b := range Binaries {
		if opts.Binaries[b] == "" {
			return nil, fmt.Errorf("no path for %s in Options.Binaries", b)
		}
	}
	c := &Cluster{opts: opts, dir: opts.Dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for _, d := range []string{"logs", "etcd", "containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs", "home", "flexvolume"} {
		if err := os.MkdirAll(filepath.Join(c.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	steps := []struct {
		what string
		run  func(context.Context) error
	}{
		{"the network", c.network},
		{"the certificates", c.certificates},
		{"etcd", c.startEtcd},
		{"kube-apiserver", c.startAPIServer},
		{"kube-controller-manager and kube-scheduler", c.startControllers},
		{"containerd", c.startContainerd},
		{"the images", c.importImages},
		{"the kubelet", c.startKubelet},
		{"kube-proxy", c.startProxy},
	}
	for _, s := range steps {
		if err := s.run(ctx); err != nil {
			return nil, fmt.Errorf("starting %s: %w", s.what, err)
		}
	}
	return c, nil
}

// Stop stops every part, the last started first. Main stops whatever
// they leave (the pods' processes).
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(15 * time.Second)
	}
}

// Logs returns the end of every process's log, for a failure's report.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", p.log, lines, Tail(p.log, lines))
	}
	return b.String()
}

// Config is the administrator's client configuration.
func (c *Cluster) Config() *rest.Config { return rest.CopyConfig(c.cfg) }

// Kubeconfig is the path of the administrator's kubeconfig.
func (c *Cluster) Kubeconfig() string { return filepath.Join(c.dir, "admin.kubeconfig") }

// Dir is the state directory.
func (c *Cluster) Dir() string { return c.dir }

// KubeletRoot is the kubelet's root directory: pods/UID/volumes/... holds
// the pods' volumes.
func (c *Cluster) KubeletRoot() string { return filepath.Join(c.dir, "kubelet") }

// Env is the environment the cluster's commands run in: HOME in the state
// directory (kubectl's and helm's caches), KUBECONFIG the administrator's,
// and the system's PATH.
func (c *Cluster) Env() []string { return c.env() }

func (c *Cluster) env() []string {
	home := filepath.Join(c.dir, "home")
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"KUBECONFIG=" + c.Kubeconfig(),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
	}
}

// network brings lo up and puts the node's address on an empty bridge,
// with a route to the Services' ClusterIPs through it: the namespace has
// no default route, and a connection from the node (the test) to a
// ClusterIP needs a route before kube-proxy's rules rewrite its address.
func (c *Cluster) network(context.Context) error {
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", nodeBridge, "type", "bridge"},
		{"addr", "add", NodeIP + "/24", "dev", nodeBridge},
		{"link", "set", nodeBridge, "up"},
		{"route", "add", ServiceSubnet, "dev", nodeBridge, "src", NodeIP},
	} {
		if err := c.run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// certificates makes the CA, the API server's serving certificate, the
// service-account keys, every client certificate and the kubeconfigs.
func (c *Cluster) certificates(context.Context) error {
	p, err := newPKI(filepath.Join(c.dir, "pki"))
	if err != nil {
		return err
	}
	c.pki = p
	if err := p.serving("apiserver", NodeIP, "127.0.0.1", apiServiceIP, "localhost",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"); err != nil {
		return err
	}
	clients := map[string]identity{
		"admin":                   {user: "kubernetes-admin", groups: []string{"system:masters"}},
		"kubelet":                 {user: "system:node:" + NodeName, groups: []string{"system:nodes"}},
		"kube-controller-manager": {user: "system:kube-controller-manager"},
		"kube-scheduler":          {user: "system:kube-scheduler"},
		"kube-proxy":              {user: "system:kube-proxy"},
		"apiserver-kubelet":       {user: "kube-apiserver-kubelet-client", groups: []string{"system:masters"}},
	}
	for name, id := range clients {
		if err := p.client(name, id); err != nil {
			return err
		}
		if name == "apiserver-kubelet" {
			continue
		}
		if err := c.writeKubeconfig(name); err != nil {
			return err
		}
	}
	c.cfg = &rest.Config{
		Host: fmt.Sprintf("https://%s:%d", NodeIP, apiPort),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: p.path("ca.crt"), CertFile: p.path("admin.crt"), KeyFile: p.path("admin.key"),
		},
		QPS: 50, Burst: 100,
	}
	c.kube, err = kubernetes.NewForConfig(c.cfg)
	return err
}

// writeKubeconfig writes NAME.kubeconfig for the client certificate NAME;
// the administrator's is admin.kubeconfig.
func (c *Cluster) writeKubeconfig(name string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["realnode"] = &clientcmdapi.Cluster{
		Server:               fmt.Sprintf("https://%s:%d", NodeIP, apiPort),
		CertificateAuthority: c.pki.path("ca.crt"),
	}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate: c.pki.path(name + ".crt"),
		ClientKey:         c.pki.path(name + ".key"),
	}
	cfg.Contexts["realnode"] = &clientcmdapi.Context{Cluster: "realnode", AuthInfo: name, Namespace: metav1.NamespaceDefault}
	cfg.CurrentContext = "realnode"
	return clientcmd.WriteToFile(*cfg, c.kubeconfig(name))
}

func (c *Cluster) kubeconfig(name string) string {
	return filepath.Join(c.dir, name+".kubeconfig")
}

func (c *Cluster) startEtcd(context.Context) error {
	p, err := c.start("etcd", c.opts.Binaries["etcd"],
		"--name=realnode", "--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=realnode=http://127.0.0.1:2380", "--unsafe-no-fsync=true")
	if err != nil {
		return err
	}
	return p.waitUntil("healthy", c.opts.Timeout, httpOK(plainClient, "http://127.0.0.1:2379/health"))
}

func (c *Cluster) startAPIServer(context.Context) error {
	k := c.pki.path
	p, err := c.start("kube-apiserver", c.opts.Binaries["kube-apiserver"],
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", fmt.Sprintf("--secure-port=%d", apiPort), "--advertise-address="+NodeIP,
		"--tls-cert-file="+k("apiserver.crt"), "--tls-private-key-file="+k("apiserver.key"),
		"--client-ca-file="+k("ca.crt"),
		"--service-account-key-file="+k("sa.pub"), "--service-account-signing-key-file="+k("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+ServiceSubnet,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction,ServiceAccount",
		"--kubelet-client-certificate="+k("apiserver-kubelet.crt"), "--kubelet-client-key="+k("apiserver-kubelet.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--enable-aggregator-routing=true",
		"--allow-privileged=true",
		"--cert-dir="+filepath.Join(c.dir, "apiserver-certs"),
	)
	if err != nil {
		return err
	}
	return p.waitUntil("ready", c.opts.Timeout, func() error {
		_, err := c.kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		return err
	})
}

// startControllers starts kube-controller-manager and kube-scheduler and
// waits for both.
func (c *Cluster) startControllers(context.Context) error {
	k := c.pki.path
	kcm := c.kubeconfig("kube-controller-manager")
	cm, err := c.start("kube-controller-manager", c.opts.Binaries["kube-controller-manager"],
		"--kubeconfig="+kcm, "--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--bind-address=127.0.0.1", "--secure-port=10257", "--leader-elect=false",
		"--service-account-private-key-file="+k("sa.key"), "--root-ca-file="+k("ca.crt"),
		"--cluster-signing-cert-file="+k("ca.crt"), "--cluster-signing-key-file="+k("ca.key"),
		"--use-service-account-credentials=true",
		"--service-cluster-ip-range="+ServiceSubnet,
		"--flex-volume-plugin-dir="+filepath.Join(c.dir, "flexvolume"),
	)
	if err != nil {
		return err
	}
	ks := c.kubeconfig("kube-scheduler")
	sched, err := c.start("kube-scheduler", c.opts.Binaries["kube-scheduler"],
		"--kubeconfig="+ks, "--authentication-kubeconfig="+ks, "--authorization-kubeconfig="+ks,
		"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false",
	)
	if err != nil {
		return err
	}
	if err := cm.waitUntil("healthy", c.opts.Timeout, httpOK(insecureClient, "https://127.0.0.1:10257/healthz")); err != nil {
		return err
	}
	return sched.waitUntil("healthy", c.opts.Timeout, httpOK(insecureClient, "https://127.0.0.1:10259/healthz"))
}

// containerdSocket is containerd's socket in the state directory.
func (c *Cluster) containerdSocket() string {
	return filepath.Join(c.dir, "containerd", "containerd.sock")
}

func (c *Cluster) startContainerd(context.Context) error {
	d := filepath.Join(c.dir, "containerd")
	config := fmt.Sprintf(containerdConfig, d, d, c.containerdSocket(), d,
		c.opts.SandboxImage, filepath.Join(c.dir, "cni", "net.d"))
	if err := os.WriteFile(filepath.Join(d, "config.toml"), []byte(config), 0o644); err != nil {
		return err
	}
	cni := fmt.Sprintf(cniConfig, cniBridge, PodSubnet, filepath.Join(c.dir, "cni", "ipam"))
	if err := os.WriteFile(filepath.Join(c.dir, "cni", "net.d", "10-realnode.conflist"), []byte(cni), 0o644); err != nil {
		return err
	}
	p, err := c.start("containerd", "containerd", "--config", filepath.Join(d, "config.toml"))
	if err != nil {
		return err
	}
	return p.waitUntil("serving", c.opts.Timeout, func() error {
		return c.run("ctr", "--address", c.containerdSocket(), "version")
	})
}

// importImages imports every image archive into containerd's k8s.io
// namespace, where the kubelet finds them.
func (c *Cluster) importImages(context.Context) error {
	for _, archive := range c.opts.Images {
		if err := c.run("ctr", "--address", c.containerdSocket(), "-n", "k8s.io", "images", "import", archive); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startKubelet(ctx context.Context) error {
	root := c.KubeletRoot()
	resolv := filepath.Join(c.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return err
	}
	config := fmt.Sprintf(kubeletConfig, c.containerdSocket(), NodeIP, c.pki.path("ca.crt"), resolv,
		filepath.Join(c.dir, "pod-logs"), filepath.Join(c.dir, "flexvolume"))
	path := filepath.Join(c.dir, "kubelet.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return err
	}
	p, err := c.start("kubelet", c.opts.Binaries["kubelet"],
		"--config="+path, "--kubeconfig="+c.kubeconfig("kubelet"), "--root-dir="+root,
		"--cert-dir="+filepath.Join(root, "pki"), "--node-ip="+NodeIP, "--hostname-override="+NodeName,
	)
	if err != nil {
		return err
	}
	if err := p.waitUntil("healthy", c.opts.Timeout, httpOK(plainClient, "http://127.0.0.1:10248/healthz")); err != nil {
		return err
	}
	return p.waitUntil("the node Ready", c.opts.Timeout, func() error {
		node, err := c.kube.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("node %s is not Ready: %v", NodeName, node.Status.Conditions)
	})
}

func (c *Cluster) startProxy(context.Context) error {
	config := fmt.Sprintf(proxyConfig, c.kubeconfig("kube-proxy"), NodeName, PodSubnet)
	path := filepath.Join(c.dir, "kube-proxy.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return err
	}
	p, err := c.start("kube-proxy", c.opts.Binaries["kube-proxy"], "--config="+path)
	if err != nil {
		return err
	}
	return p.waitUntil("healthy", c.opts.Timeout, httpOK(plainClient, "http://127.0.0.1:10256/healthz"))
}

var (
	plainClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	// insecureClient reads the health of the controller manager and the
	// scheduler on 127.0.0.1, whose serving certificates they make
	// themselves.
	insecureClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback health check
	}}
)

// httpOK checks that url answers 200.
func httpOK(client *http.Client, url string) func() error {
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return nil
	}
}
