package node

// containerdConfig is containerd's configuration: root, state, socket and
// plugin directories in the state directory; restrict_oom_score_adj
// because root here may not lower OOM scores; the sandbox image made by
// the test; CNI plugins from Debian's /usr/lib/cni.
const containerdConfig = `version = 2
root = "%s/root"
state = "%s/state"

[grpc]
  address = "%s"

[plugins."io.containerd.internal.v1.opt"]
  path = "%s/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "%s"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%s"
`

// cniConfig puts each pod on a bridge, with an address of the pod subnet
// and a default route through the bridge.
const cniConfig = `{
  "cniVersion": "0.4.0",
  "name": "realnode",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "%s",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "%s"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "%s"
      }
    }
  ]
}
`

// kubeletConfig is the kubelet's configuration for this machine: cgroup
// v1 with the cgroupfs driver, swap allowed, eviction and image garbage
// collection loose enough for a small disk, client certificates checked
// against the cluster's CA.
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
address: %s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
resolvConf: %s
podLogsDir: %s
volumePluginDir: %s
evictionHard:
  memory.available: 1Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
`

// proxyConfig is kube-proxy in iptables mode. Conntrack settings at zero
// leave the host's conntrack table as it is.
const proxyConfig = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
clusterCIDR: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`
