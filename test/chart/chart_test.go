package chart

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Value sets the chart is rendered with. Each is a file a user could pass
// with --values.
const (
	certManagerValues = `
webhook:
  certMode: cert-manager
`
	certManagerIssuerValues = `
webhook:
  certMode: cert-manager
  certManager:
    issuerRef:
      kind: ClusterIssuer
      name: corp-ca
`
	monitoringValues = `
metrics:
  enabled: true
  port: 9090
  serviceMonitor:
    enabled: true
    interval: 15s
    labels:
      release: prometheus
`
	noMetricsValues = `
metrics:
  enabled: false
`
	noPolicyValues = `
admissionPolicy:
  enabled: false
`
	noLeaderElectionValues = `
leaderElection:
  enabled: false
`
	customValues = `
image:
  repository: registry.example/team/softreload-manager
  tag: v1.2.3
  pullPolicy: Always
agent:
  image:
    repository: registry.example/team/softreload-agent
    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
replicas: 3
resources:
  requests:
    cpu: 100m
    memory: 128Mi
  limits:
    cpu: null # no CPU limit: null removes a default
    memory: 1Gi
webhook:
  failurePolicy: Ignore
  port: 10443
nodeSelector:
  kubernetes.io/os: linux
tolerations:
  - key: dedicated
    operator: Equal
    value: ops
    effect: NoSchedule
extraArgs:
  - --v=2
`
)

// defaultIDs are the objects of an install with the default values: a
// working install needs every one of them.
var defaultIDs = []string{
	"ClusterRole/softreload-manager-role",
	"ClusterRole/softreload-webhook-configuration",
	"ClusterRoleBinding/softreload-manager-rolebinding",
	"ClusterRoleBinding/softreload-webhook-configuration",
	"CustomResourceDefinition/workerpools.workers.softreload.dev",
	"Deployment/softreload-manager",
	"MutatingWebhookConfiguration/softreload-injector",
	"Role/softreload-leader-election",
	"Role/softreload-webhook-cert",
	"RoleBinding/softreload-leader-election",
	"RoleBinding/softreload-webhook-cert",
	"Secret/softreload-webhook-cert",
	"Service/softreload-manager-metrics",
	"Service/softreload-webhook",
	"ServiceAccount/softreload-manager",
	"ValidatingAdmissionPolicy/softreload-agent-own-pod",
	"ValidatingAdmissionPolicyBinding/softreload-agent-own-pod",
}

// edit returns ids without drop and with add, sorted.
func edit(ids []string, drop, add []string) []string {
	out := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(drop, id) })
	out = append(out, add...)
	sort.Strings(out)
	return out
}

// selfCertIDs exist only when the manager issues its own certificate.
var selfCertIDs = []string{
	"Secret/softreload-webhook-cert",
	"Role/softreload-webhook-cert",
	"RoleBinding/softreload-webhook-cert",
	"ClusterRole/softreload-webhook-configuration",
	"ClusterRoleBinding/softreload-webhook-configuration",
}

func TestHelmLint(t *testing.T) {
	for name, values := range map[string]string{
		"defaults": "", "cert-manager": certManagerValues, "monitoring": monitoringValues,
		"no policy": noPolicyValues, "custom": customValues,
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--namespace", namespace}
			if values != "" {
				args = append(args, "--values", valuesFile(t, values))
			}
			if out, err := helm(t, args...); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}

func TestTemplateRendersTheObjectsOfEachValueSet(t *testing.T) {
	tests := map[string]struct {
		values string
		want   []string
	}{
		"defaults": {want: defaultIDs},
		"cert-manager issues the certificate": {
			values: certManagerValues,
			want: edit(defaultIDs, selfCertIDs, []string{
				"Issuer/softreload-selfsigned", "Certificate/softreload-serving-cert",
			}),
		},
		"cert-manager with the user's issuer": {
			values: certManagerIssuerValues,
			want:   edit(defaultIDs, selfCertIDs, []string{"Certificate/softreload-serving-cert"}),
		},
		"metrics and ServiceMonitor": {
			values: monitoringValues,
			want:   edit(defaultIDs, nil, []string{"ServiceMonitor/softreload-manager-metrics"}),
		},
		"no metrics": {
			values: noMetricsValues,
			want:   edit(defaultIDs, []string{"Service/softreload-manager-metrics"}, nil),
		},
		"admission policy off": {
			values: noPolicyValues,
			want: edit(defaultIDs, []string{
				"ValidatingAdmissionPolicy/softreload-agent-own-pod",
				"ValidatingAdmissionPolicyBinding/softreload-agent-own-pod",
			}, nil),
		},
		"no leader election": {
			values: noLeaderElectionValues,
			want: edit(defaultIDs, []string{
				"Role/softreload-leader-election", "RoleBinding/softreload-leader-election",
			}, nil),
		},
		"custom images, replicas and resources": {values: customValues, want: defaultIDs},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			objs := mustTemplate(t, tc.values)
			if diff := cmp.Diff(tc.want, objs.ids()); diff != "" {
				t.Errorf("rendered objects (-want +got):\n%s", diff)
			}
			for _, o := range objs {
				switch o.GetKind() {
				case "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
					"MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
					if o.GetNamespace() != "" {
						t.Errorf("cluster-scoped %s/%s has namespace %q", o.GetKind(), o.GetName(), o.GetNamespace())
					}
				default:
					if o.GetNamespace() != namespace {
						t.Errorf("%s/%s is in namespace %q, want the release's %q", o.GetKind(), o.GetName(), o.GetNamespace(), namespace)
					}
				}
			}
		})
	}
}

func TestTemplateRefusesBadValues(t *testing.T) {
	tests := map[string]struct {
		values, wantErr string
	}{
		"unknown cert mode":      {values: "webhook:\n  certMode: vault\n", wantErr: "certMode"},
		"unknown failure policy": {values: "webhook:\n  failurePolicy: Retry\n", wantErr: "failurePolicy"},
		"replicas without leader election": {
			values:  "replicas: 2\nleaderElection:\n  enabled: false\n",
			wantErr: "leaderElection",
		},
		"ServiceMonitor without metrics": {
			values:  "metrics:\n  enabled: false\n  serviceMonitor:\n    enabled: true\n",
			wantErr: "metrics.enabled",
		},
		"no replicas": {values: "replicas: 0\n", wantErr: "replicas"},
		// A misspelt value would otherwise be ignored without a word.
		"misspelt value":        {values: "replica: 3\n", wantErr: "replica"},
		"misspelt nested value": {values: "webhook:\n  certmode: cert-manager\n", wantErr: "certmode"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := template(t, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one that names %q", err, tc.wantErr)
			}
		})
	}
}

func TestWebhookConfiguration(t *testing.T) {
	generated := webhook(t, renamedGenerated(t))
	tests := map[string]struct {
		values            string
		wantFailurePolicy string
		wantCAInjection   string // the cert-manager annotation, "" for none
		wantPort          int64
	}{
		"defaults": {wantFailurePolicy: "Fail", wantPort: 9443},
		"cert-manager": {
			values: certManagerValues, wantFailurePolicy: "Fail", wantPort: 9443,
			wantCAInjection: namespace + "/softreload-serving-cert",
		},
		"custom": {values: customValues, wantFailurePolicy: "Ignore", wantPort: 10443},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			objs := mustTemplate(t, tc.values)
			hook := webhook(t, objs)

			// What the +kubebuilder:webhook marker says is what the chart says.
			for _, key := range []string{"name", "rules", "sideEffects", "admissionReviewVersions", "reinvocationPolicy"} {
				if diff := cmp.Diff(generated[key], hook[key]); diff != "" {
					t.Errorf("webhook %s differs from config/webhook/manifests.yaml (-generated +chart):\n%s", key, diff)
				}
			}
			wantClient := map[string]any{"service": map[string]any{
				"name": "softreload-webhook", "namespace": namespace, "path": "/mutate-v1-pod", "port": int64(443),
			}}
			if diff := cmp.Diff(wantClient, hook["clientConfig"]); diff != "" {
				t.Errorf("clientConfig (-want +got); a caBundle must not be rendered, the manager or cert-manager writes it:\n%s", diff)
			}
			wantSelector := map[string]any{"matchExpressions": []any{
				map[string]any{"key": "softreload.dev/pool", "operator": "Exists"},
			}}
			if diff := cmp.Diff(wantSelector, hook["objectSelector"]); diff != "" {
				t.Errorf("objectSelector (-want +got):\n%s", diff)
			}
			if hook["failurePolicy"] != tc.wantFailurePolicy {
				t.Errorf("failurePolicy = %v, want %s", hook["failurePolicy"], tc.wantFailurePolicy)
			}

			annotations := objs.get(t, "MutatingWebhookConfiguration", "softreload-injector").GetAnnotations()
			if got := annotations["cert-manager.io/inject-ca-from"]; got != tc.wantCAInjection {
				t.Errorf("cert-manager.io/inject-ca-from = %q, want %q", got, tc.wantCAInjection)
			}

			// The Service reaches the manager's webhook port.
			svc := objs.get(t, "Service", "softreload-webhook")
			ports := field(t, svc, "spec", "ports").([]any)
			wantPorts := []any{map[string]any{"name": "https", "port": int64(443), "targetPort": "webhook", "protocol": "TCP"}}
			if diff := cmp.Diff(wantPorts, ports); diff != "" {
				t.Errorf("webhook Service ports (-want +got):\n%s", diff)
			}
			if got := containerPort(t, objs, "webhook"); got != tc.wantPort {
				t.Errorf("container port webhook = %d, want %d", got, tc.wantPort)
			}
			if !slices.Contains(args(t, objs), "--webhook-port="+strconv.FormatInt(tc.wantPort, 10)) {
				t.Errorf("args %v do not serve the webhook on %d", args(t, objs), tc.wantPort)
			}
			checkSelects(t, objs, svc)
		})
	}
}

// renamedGenerated is controller-gen's webhook configuration.
func renamedGenerated(t *testing.T) objects {
	t.Helper()
	objs := readObjects(t, "config/webhook/manifests.yaml")
	for _, o := range objs {
		o.SetName("softreload-injector")
	}
	return objs
}

func TestCertManagerCertificate(t *testing.T) {
	for name, tc := range map[string]struct {
		values     string
		wantIssuer map[string]any
	}{
		"self-signed issuer": {values: certManagerValues, wantIssuer: map[string]any{"kind": "Issuer", "name": "softreload-selfsigned"}},
		"user's issuer":      {values: certManagerIssuerValues, wantIssuer: map[string]any{"kind": "ClusterIssuer", "name": "corp-ca"}},
	} {
		t.Run(name, func(t *testing.T) {
			objs := mustTemplate(t, tc.values)
			cert := objs.get(t, "Certificate", "softreload-serving-cert")
			want := map[string]any{
				"dnsNames": []any{
					"softreload-webhook." + namespace + ".svc",
					"softreload-webhook." + namespace + ".svc.cluster.local",
				},
				"issuerRef":  tc.wantIssuer,
				"secretName": "softreload-webhook-cert",
			}
			if diff := cmp.Diff(want, cert.Object["spec"]); diff != "" {
				t.Errorf("Certificate spec (-want +got):\n%s", diff)
			}
			if !slices.Contains(args(t, objs), "--webhook-cert-mode=cert-manager") {
				t.Errorf("args %v lack --webhook-cert-mode=cert-manager", args(t, objs))
			}
		})
	}
}

func TestDeployment(t *testing.T) {
	tests := map[string]struct {
		values        string
		wantImage     string
		wantPull      string
		wantArgs      []string
		wantReplicas  int64
		wantResources map[string]any
	}{
		"defaults": {
			wantImage: "ghcr.io/softreload/manager:0.1.0",
			wantPull:  "IfNotPresent",
			wantArgs: []string{
				"--metrics-bind-address=:8080",
				"--health-probe-bind-address=:8081",
				"--leader-elect",
				"--webhook-port=9443",
				"--webhook-cert-dir=/tmp/k8s-webhook-server/serving-certs",
				"--webhook-cert-mode=self",
				"--agent-image=ghcr.io/softreload/agent:0.1.0",
			},
			wantReplicas: 1,
			wantResources: map[string]any{
				"requests": map[string]any{"cpu": "10m", "memory": "64Mi"},
				"limits":   map[string]any{"cpu": "500m", "memory": "256Mi"},
			},
		},
		"custom": {
			values:    customValues,
			wantImage: "registry.example/team/softreload-manager:v1.2.3",
			wantPull:  "Always",
			wantArgs: []string{
				"--metrics-bind-address=:8080",
				"--health-probe-bind-address=:8081",
				"--leader-elect",
				"--webhook-port=10443",
				"--webhook-cert-dir=/tmp/k8s-webhook-server/serving-certs",
				"--webhook-cert-mode=self",
				"--agent-image=registry.example/team/softreload-agent@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
				"--v=2",
			},
			wantReplicas: 3,
			wantResources: map[string]any{
				"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
				"limits":   map[string]any{"memory": "1Gi"},
			},
		},
		"no metrics, no leader election": {
			values:    noMetricsValues + noLeaderElectionValues,
			wantImage: "ghcr.io/softreload/manager:0.1.0",
			wantPull:  "IfNotPresent",
			wantArgs: []string{
				"--metrics-bind-address=0",
				"--health-probe-bind-address=:8081",
				"--webhook-port=9443",
				"--webhook-cert-dir=/tmp/k8s-webhook-server/serving-certs",
				"--webhook-cert-mode=self",
				"--agent-image=ghcr.io/softreload/agent:0.1.0",
			},
			wantReplicas: 1,
			wantResources: map[string]any{
				"requests": map[string]any{"cpu": "10m", "memory": "64Mi"},
				"limits":   map[string]any{"cpu": "500m", "memory": "256Mi"},
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			objs := mustTemplate(t, tc.values)
			d := objs.get(t, "Deployment", "softreload-manager")
			c := managerContainer(t, objs)
			if c["image"] != tc.wantImage || c["imagePullPolicy"] != tc.wantPull {
				t.Errorf("image %v (%v), want %s (%s)", c["image"], c["imagePullPolicy"], tc.wantImage, tc.wantPull)
			}
			if diff := cmp.Diff([]any{"/manager"}, c["command"]); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantArgs, args(t, objs)); diff != "" {
				t.Errorf("args (-want +got):\n%s", diff)
			}
			if got := field(t, d, "spec", "replicas"); got != tc.wantReplicas {
				t.Errorf("replicas = %v, want %d", got, tc.wantReplicas)
			}
			if diff := cmp.Diff(tc.wantResources, c["resources"]); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
			if got := field(t, d, "spec", "template", "spec", "serviceAccountName"); got != "softreload-manager" {
				t.Errorf("serviceAccountName = %v", got)
			}
			wantEnv := []any{map[string]any{
				"name":      "POD_NAMESPACE",
				"valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.namespace"}},
			}}
			if diff := cmp.Diff(wantEnv, c["env"]); diff != "" {
				t.Errorf("env (-want +got); the manager finds its certificate Secret by POD_NAMESPACE:\n%s", diff)
			}
			checkRestricted(t, d, c)
			checkProbesAndCert(t, d, c)
		})
	}
}

// checkRestricted checks that the manager passes the restricted Pod
// Security Standard, as the softreload-system namespace enforces it.
func checkRestricted(t *testing.T, d *unstructured.Unstructured, c map[string]any) {
	t.Helper()
	pod := field(t, d, "spec", "template", "spec", "securityContext").(map[string]any)
	if pod["runAsNonRoot"] != true {
		t.Errorf("pod runAsNonRoot = %v", pod["runAsNonRoot"])
	}
	if diff := cmp.Diff(map[string]any{"type": "RuntimeDefault"}, pod["seccompProfile"]); diff != "" {
		t.Errorf("seccompProfile (-want +got):\n%s", diff)
	}
	want := map[string]any{
		"allowPrivilegeEscalation": false,
		"readOnlyRootFilesystem":   true,
		"capabilities":             map[string]any{"drop": []any{"ALL"}},
	}
	if diff := cmp.Diff(want, c["securityContext"]); diff != "" {
		t.Errorf("container securityContext (-want +got):\n%s", diff)
	}
}

// checkProbesAndCert checks the health probes and that the webhook's
// certificate Secret is mounted where --webhook-cert-dir points.
func checkProbesAndCert(t *testing.T, d *unstructured.Unstructured, c map[string]any) {
	t.Helper()
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		p, _ := c[probe].(map[string]any)
		want := map[string]any{"path": path, "port": "health"}
		if diff := cmp.Diff(want, p["httpGet"]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", probe, diff)
		}
	}
	var certVolume string
	for _, m := range c["volumeMounts"].([]any) {
		m := m.(map[string]any)
		if m["mountPath"] == "/tmp/k8s-webhook-server/serving-certs" {
			certVolume = m["name"].(string)
		}
	}
	var secret any
	for _, v := range field(t, d, "spec", "template", "spec", "volumes").([]any) {
		v := v.(map[string]any)
		if v["name"] == certVolume {
			secret = v["secret"]
		}
	}
	if diff := cmp.Diff(map[string]any{"secretName": "softreload-webhook-cert"}, secret); diff != "" {
		t.Errorf("the volume at the cert dir (-want +got):\n%s", diff)
	}
}

func containerPort(t *testing.T, objs objects, name string) int64 {
	t.Helper()
	for _, p := range managerContainer(t, objs)["ports"].([]any) {
		p := p.(map[string]any)
		if p["name"] == name {
			return p["containerPort"].(int64)
		}
	}
	t.Fatalf("the manager container has no port %q", name)
	return 0
}

// checkSelects checks that svc selects the manager's pods.
func checkSelects(t *testing.T, objs objects, svc *unstructured.Unstructured) {
	t.Helper()
	d := objs.get(t, "Deployment", "softreload-manager")
	podLabels := d.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
	selector := field(t, svc, "spec", "selector").(map[string]any)
	if len(selector) == 0 {
		t.Fatalf("Service %s selects every pod", svc.GetName())
	}
	for k, v := range selector {
		if podLabels[k] != v {
			t.Errorf("Service %s selects %s=%v; the manager's pods have %v", svc.GetName(), k, v, podLabels[k])
		}
	}
}

func TestMetrics(t *testing.T) {
	objs := mustTemplate(t, monitoringValues)
	svc := objs.get(t, "Service", "softreload-manager-metrics")
	checkSelects(t, objs, svc)
	wantPorts := []any{map[string]any{"name": "metrics", "port": int64(9090), "targetPort": "metrics", "protocol": "TCP"}}
	if diff := cmp.Diff(wantPorts, field(t, svc, "spec", "ports")); diff != "" {
		t.Errorf("metrics Service ports (-want +got):\n%s", diff)
	}
	if got := containerPort(t, objs, "metrics"); got != 9090 {
		t.Errorf("container port metrics = %d, want 9090", got)
	}
	if !slices.Contains(args(t, objs), "--metrics-bind-address=:9090") {
		t.Errorf("args %v do not serve metrics on 9090", args(t, objs))
	}
	sm := objs.get(t, "ServiceMonitor", "softreload-manager-metrics")
	if got := sm.GetLabels()["release"]; got != "prometheus" {
		t.Errorf("ServiceMonitor label release = %q, want the value's prometheus", got)
	}
	wantSelector := field(t, svc, "metadata", "labels").(map[string]any)
	for k, v := range field(t, sm, "spec", "selector", "matchLabels").(map[string]any) {
		if wantSelector[k] != v {
			t.Errorf("ServiceMonitor selects %s=%v; the metrics Service has %v", k, v, wantSelector[k])
		}
	}
	wantEndpoints := []any{map[string]any{"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "15s"}}
	if diff := cmp.Diff(wantEndpoints, field(t, sm, "spec", "endpoints")); diff != "" {
		t.Errorf("ServiceMonitor endpoints (-want +got):\n%s", diff)
	}
}

// The chart's CRDs are config/crd/bases, byte for byte.
func TestChartCRDsAreConfigCRDs(t *testing.T) {
	base := filepath.Join(root, "config", "crd", "bases")
	want, err := filepath.Glob(filepath.Join(base, "*.yaml"))
	if err != nil || len(want) == 0 {
		t.Fatalf("no CRDs in %s (%v)", base, err)
	}
	got, err := filepath.Glob(filepath.Join(root, chartDir, "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if diff := cmp.Diff(names(want), names(got)); diff != "" {
		t.Fatalf("chart crds/ files differ from config/crd/bases (-config +chart); run make manifests:\n%s", diff)
	}
	for _, p := range want {
		a, _ := os.ReadFile(p)
		b, err := os.ReadFile(filepath.Join(root, chartDir, "crds", filepath.Base(p)))
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s in the chart differs from config/crd/bases; run make manifests", filepath.Base(p))
		}
	}

	// And helm installs exactly that CRD.
	crd := mustTemplate(t, "").get(t, "CustomResourceDefinition", "workerpools.workers.softreload.dev")
	wantCRD := readObjects(t, "config/crd/bases/workers.softreload.dev_workerpools.yaml")
	if diff := cmp.Diff(wantCRD[0].Object, crd.Object); diff != "" {
		t.Errorf("rendered CRD (-config +chart):\n%s", diff)
	}
}

// The manager's ClusterRole has exactly the rules controller-gen generated.
func TestManagerRulesAreGenerated(t *testing.T) {
	want := readObjects(t, "config/rbac/role.yaml")
	if len(want) != 1 {
		t.Fatalf("config/rbac/role.yaml has %d objects, want 1", len(want))
	}
	got := mustTemplate(t, "").get(t, "ClusterRole", "softreload-manager-role")
	if diff := cmp.Diff(want[0].Object["rules"], got.Object["rules"]); diff != "" {
		t.Errorf("softreload-manager-role rules (-config/rbac/role.yaml +chart); run make manifests:\n%s", diff)
	}
	binding := mustTemplate(t, "").get(t, "ClusterRoleBinding", "softreload-manager-rolebinding")
	wantSubjects := []any{map[string]any{"kind": "ServiceAccount", "name": "softreload-manager", "namespace": namespace}}
	if diff := cmp.Diff(wantSubjects, binding.Object["subjects"]); diff != "" {
		t.Errorf("softreload-manager-rolebinding subjects (-want +got):\n%s", diff)
	}
}

// The agents' admission policy is config/policy's.
func TestAdmissionPolicyIsConfigPolicy(t *testing.T) {
	want := readObjects(t, "config/policy/agent-pod-policy.yaml")
	objs := mustTemplate(t, "")
	for _, w := range want {
		got := objs.get(t, w.GetKind(), w.GetName())
		if diff := cmp.Diff(w.Object, got.Object); diff != "" {
			t.Errorf("%s/%s (-config/policy +chart):\n%s", w.GetKind(), w.GetName(), diff)
		}
	}
}

// Installed into another namespace, nothing points at softreload-system:
// the webhook's Service, the bindings' subjects and the certificate's
// names follow the release.
func TestChartFollowsTheReleaseNamespace(t *testing.T) {
	for name, values := range map[string]string{
		"defaults":     "",
		"cert-manager": certManagerValues + "metrics:\n  serviceMonitor:\n    enabled: true\n",
	} {
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, "template", "softreload", chartDir, "--namespace", "ops", "--include-crds", "--values", valuesFile(t, values))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, namespace) {
				t.Errorf("rendered into namespace ops, the chart still names %s", namespace)
			}
			objs := decode(t, out)
			if got := webhook(t, objs)["clientConfig"].(map[string]any)["service"].(map[string]any)["namespace"]; got != "ops" {
				t.Errorf("the webhook calls a Service in %v, want ops", got)
			}
		})
	}
}
