package chart

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
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

var _ = DescribeTable("helm lint --strict passes",
	func(values string) {
		args := []string{"lint", "--strict", chartDir, "--namespace", namespace}
		if values != "" {
			args = append(args, "--values", valuesFile(values))
		}
		out, err := helm(args...)
		Expect(err).NotTo(HaveOccurred(), "%s", out)
	},
	Entry("defaults", ""),
	Entry("cert-manager", certManagerValues),
	Entry("monitoring", monitoringValues),
	Entry("no policy", noPolicyValues),
	Entry("custom", customValues),
)

var _ = DescribeTable("helm template renders the objects of each value set, each in its namespace",
	func(values string, want []string) {
		objs := mustTemplate(values)
		Expect(objs.ids()).To(Equal(want), "rendered objects")
		for _, o := range objs {
			switch o.GetKind() {
			case "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
				"MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
				Expect(o.GetNamespace()).To(BeEmpty(), "cluster-scoped %s/%s has a namespace", o.GetKind(), o.GetName())
			default:
				Expect(o.GetNamespace()).To(Equal(namespace), "%s/%s is not in the release's namespace", o.GetKind(), o.GetName())
			}
		}
	},
	Entry("defaults", "", defaultIDs),
	Entry("cert-manager issues the certificate", certManagerValues, edit(defaultIDs, selfCertIDs, []string{
		"Issuer/softreload-selfsigned", "Certificate/softreload-serving-cert",
	})),
	Entry("cert-manager with the user's issuer", certManagerIssuerValues,
		edit(defaultIDs, selfCertIDs, []string{"Certificate/softreload-serving-cert"})),
	Entry("metrics and ServiceMonitor", monitoringValues,
		edit(defaultIDs, nil, []string{"ServiceMonitor/softreload-manager-metrics"})),
	Entry("no metrics", noMetricsValues,
		edit(defaultIDs, []string{"Service/softreload-manager-metrics"}, nil)),
	Entry("admission policy off", noPolicyValues, edit(defaultIDs, []string{
		"ValidatingAdmissionPolicy/softreload-agent-own-pod",
		"ValidatingAdmissionPolicyBinding/softreload-agent-own-pod",
	}, nil)),
	Entry("no leader election", noLeaderElectionValues, edit(defaultIDs, []string{
		"Role/softreload-leader-election", "RoleBinding/softreload-leader-election",
	}, nil)),
	Entry("custom images, replicas and resources", customValues, defaultIDs),
)

var _ = DescribeTable("helm template refuses bad values, naming them",
	func(values, wantErr string) {
		_, err := template(values)
		Expect(err).To(MatchError(ContainSubstring(wantErr)))
	},
	Entry("unknown cert mode", "webhook:\n  certMode: vault\n", "certMode"),
	Entry("unknown failure policy", "webhook:\n  failurePolicy: Retry\n", "failurePolicy"),
	Entry("replicas without leader election", "replicas: 2\nleaderElection:\n  enabled: false\n", "leaderElection"),
	Entry("ServiceMonitor without metrics", "metrics:\n  enabled: false\n  serviceMonitor:\n    enabled: true\n", "metrics.enabled"),
	Entry("no replicas", "replicas: 0\n", "replicas"),
	// A misspelt value would otherwise be ignored without a word.
	Entry("misspelt value", "replica: 3\n", "replica"),
	Entry("misspelt nested value", "webhook:\n  certmode: cert-manager\n", "certmode"),
)

// wantCAInjection is the cert-manager annotation, "" for none.
var _ = DescribeTable("The webhook configuration",
	func(values, wantFailurePolicy, wantCAInjection string, wantPort int64) {
		generated := webhook(renamedGenerated())
		objs := mustTemplate(values)
		hook := webhook(objs)

		// What the +kubebuilder:webhook marker says is what the chart says.
		for _, key := range []string{"name", "rules", "sideEffects", "admissionReviewVersions", "reinvocationPolicy"} {
			Expect(hook[key]).To(BeComparableTo(generated[key]), "webhook %s, against config/webhook/manifests.yaml", key)
		}
		Expect(hook["clientConfig"]).To(BeComparableTo(map[string]any{"service": map[string]any{
			"name": "softreload-webhook", "namespace": namespace, "path": "/mutate-v1-pod", "port": int64(443),
		}}), "clientConfig; a caBundle must not be rendered, the manager or cert-manager writes it")
		Expect(hook["objectSelector"]).To(BeComparableTo(map[string]any{"matchExpressions": []any{
			map[string]any{"key": "softreload.dev/pool", "operator": "Exists"},
		}}), "objectSelector")
		Expect(hook["failurePolicy"]).To(Equal(wantFailurePolicy), "failurePolicy")

		annotations := objs.get("MutatingWebhookConfiguration", "softreload-injector").GetAnnotations()
		Expect(annotations["cert-manager.io/inject-ca-from"]).To(Equal(wantCAInjection), "cert-manager.io/inject-ca-from")

		By("reaching the manager's webhook port through the Service")
		svc := objs.get("Service", "softreload-webhook")
		Expect(field(svc, "spec", "ports")).To(BeComparableTo([]any{
			map[string]any{"name": "https", "port": int64(443), "targetPort": "webhook", "protocol": "TCP"},
		}), "webhook Service ports")
		Expect(containerPort(objs, "webhook")).To(Equal(wantPort), "container port webhook")
		Expect(args(objs)).To(ContainElement("--webhook-port="+strconv.FormatInt(wantPort, 10)), "the manager's args serve the webhook")
		checkSelects(objs, svc)
	},
	Entry("defaults", "", "Fail", "", int64(9443)),
	Entry("cert-manager", certManagerValues, "Fail", namespace+"/softreload-serving-cert", int64(9443)),
	Entry("custom", customValues, "Ignore", "", int64(10443)),
)

// renamedGenerated is controller-gen's webhook configuration.
func renamedGenerated() objects {
	GinkgoHelper()
	objs := readObjects("config/webhook/manifests.yaml")
	for _, o := range objs {
		o.SetName("softreload-injector")
	}
	return objs
}

var _ = DescribeTable("The cert-manager Certificate",
	func(values string, wantIssuer map[string]any) {
		objs := mustTemplate(values)
		cert := objs.get("Certificate", "softreload-serving-cert")
		Expect(cert.Object["spec"]).To(BeComparableTo(map[string]any{
			"dnsNames": []any{
				"softreload-webhook." + namespace + ".svc",
				"softreload-webhook." + namespace + ".svc.cluster.local",
			},
			"issuerRef":  wantIssuer,
			"secretName": "softreload-webhook-cert",
		}), "Certificate spec")
		Expect(args(objs)).To(ContainElement("--webhook-cert-mode=cert-manager"), "the manager's args")
	},
	Entry("self-signed issuer", certManagerValues, map[string]any{"kind": "Issuer", "name": "softreload-selfsigned"}),
	Entry("user's issuer", certManagerIssuerValues, map[string]any{"kind": "ClusterIssuer", "name": "corp-ca"}),
)

// deployment is what a value set must make of the manager's Deployment.
type deployment struct {
	values        string
	wantImage     string
	wantPull      string
	wantArgs      []string
	wantReplicas  int64
	wantResources map[string]any
}

var _ = DescribeTable("The manager's Deployment",
	func(tc deployment) {
		objs := mustTemplate(tc.values)
		d := objs.get("Deployment", "softreload-manager")
		c := managerContainer(objs)
		Expect(c["image"]).To(Equal(tc.wantImage), "image")
		Expect(c["imagePullPolicy"]).To(Equal(tc.wantPull), "imagePullPolicy")
		Expect(c["command"]).To(Equal([]any{"/manager"}), "command")
		Expect(args(objs)).To(Equal(tc.wantArgs), "args")
		Expect(field(d, "spec", "replicas")).To(Equal(tc.wantReplicas), "replicas")
		Expect(c["resources"]).To(BeComparableTo(tc.wantResources), "resources")
		Expect(field(d, "spec", "template", "spec", "serviceAccountName")).To(Equal("softreload-manager"), "serviceAccountName")
		Expect(c["env"]).To(BeComparableTo([]any{map[string]any{
			"name":      "POD_NAMESPACE",
			"valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "metadata.namespace"}},
		}}), "env; the manager finds its certificate Secret by POD_NAMESPACE")
		checkRestricted(d, c)
		checkProbesAndCert(d, c)
	},
	Entry("defaults", deployment{
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
	}),
	Entry("custom", deployment{
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
	}),
	Entry("no metrics, no leader election", deployment{
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
	}),
)

// checkRestricted checks that the manager passes the restricted Pod
// Security Standard, as the softreload-system namespace enforces it.
func checkRestricted(d *unstructured.Unstructured, c map[string]any) {
	GinkgoHelper()
	pod := field(d, "spec", "template", "spec", "securityContext").(map[string]any)
	Expect(pod).To(HaveKeyWithValue("runAsNonRoot", true), "the pod's securityContext")
	Expect(pod["seccompProfile"]).To(BeComparableTo(map[string]any{"type": "RuntimeDefault"}), "seccompProfile")
	Expect(c["securityContext"]).To(BeComparableTo(map[string]any{
		"allowPrivilegeEscalation": false,
		"readOnlyRootFilesystem":   true,
		"capabilities":             map[string]any{"drop": []any{"ALL"}},
	}), "container securityContext")
}

// checkProbesAndCert checks the health probes and that the webhook's
// certificate Secret is mounted where --webhook-cert-dir points.
func checkProbesAndCert(d *unstructured.Unstructured, c map[string]any) {
	GinkgoHelper()
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		p, _ := c[probe].(map[string]any)
		Expect(p["httpGet"]).To(BeComparableTo(map[string]any{"path": path, "port": "health"}), probe)
	}
	var certVolume string
	for _, m := range c["volumeMounts"].([]any) {
		m := m.(map[string]any)
		if m["mountPath"] == "/tmp/k8s-webhook-server/serving-certs" {
			certVolume = m["name"].(string)
		}
	}
	var secret any
	for _, v := range field(d, "spec", "template", "spec", "volumes").([]any) {
		v := v.(map[string]any)
		if v["name"] == certVolume {
			secret = v["secret"]
		}
	}
	Expect(secret).To(BeComparableTo(map[string]any{"secretName": "softreload-webhook-cert"}), "the volume at the cert dir")
}

// containerPort is the manager container's port of that name.
func containerPort(objs objects, name string) int64 {
	GinkgoHelper()
	for _, p := range managerContainer(objs)["ports"].([]any) {
		p := p.(map[string]any)
		if p["name"] == name {
			return p["containerPort"].(int64)
		}
	}
	Fail("the manager container has no port " + name)
	return 0
}

// checkSelects checks that svc selects the manager's pods.
func checkSelects(objs objects, svc *unstructured.Unstructured) {
	GinkgoHelper()
	d := objs.get("Deployment", "softreload-manager")
	podLabels := d.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
	selector := field(svc, "spec", "selector").(map[string]any)
	Expect(selector).NotTo(BeEmpty(), "Service %s selects every pod", svc.GetName())
	for k, v := range selector {
		Expect(podLabels).To(HaveKeyWithValue(k, v), "Service %s selects %s=%v; the manager's pods' labels", svc.GetName(), k, v)
	}
}

var _ = Describe("Metrics", func() {
	It("are served on the port the values say, and a ServiceMonitor scrapes them", func() {
		objs := mustTemplate(monitoringValues)
		svc := objs.get("Service", "softreload-manager-metrics")
		checkSelects(objs, svc)
		Expect(field(svc, "spec", "ports")).To(BeComparableTo([]any{
			map[string]any{"name": "metrics", "port": int64(9090), "targetPort": "metrics", "protocol": "TCP"},
		}), "metrics Service ports")
		Expect(containerPort(objs, "metrics")).To(Equal(int64(9090)), "container port metrics")
		Expect(args(objs)).To(ContainElement("--metrics-bind-address=:9090"), "the manager's args serve metrics on 9090")
		sm := objs.get("ServiceMonitor", "softreload-manager-metrics")
		Expect(sm.GetLabels()).To(HaveKeyWithValue("release", "prometheus"), "ServiceMonitor labels: the value's release")
		svcLabels := field(svc, "metadata", "labels").(map[string]any)
		for k, v := range field(sm, "spec", "selector", "matchLabels").(map[string]any) {
			Expect(svcLabels).To(HaveKeyWithValue(k, v), "ServiceMonitor selects %s=%v; the metrics Service's labels", k, v)
		}
		Expect(field(sm, "spec", "endpoints")).To(BeComparableTo([]any{
			map[string]any{"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "15s"},
		}), "ServiceMonitor endpoints")
	})
})

var _ = Describe("What controller-gen generates", func() {
	// The chart's CRDs are config/crd/bases, byte for byte.
	It("is the chart's CRDs, byte for byte, and helm installs exactly that CRD", func() {
		base := filepath.Join(root, "config", "crd", "bases")
		want, err := filepath.Glob(filepath.Join(base, "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(want).NotTo(BeEmpty(), "no CRDs in %s", base)
		got, err := filepath.Glob(filepath.Join(root, chartDir, "crds", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		names := func(paths []string) []string {
			var out []string
			for _, p := range paths {
				out = append(out, filepath.Base(p))
			}
			return out
		}
		Expect(names(got)).To(Equal(names(want)), "chart crds/ files, against config/crd/bases; run make manifests")
		for _, p := range want {
			a, _ := os.ReadFile(p)
			b, err := os.ReadFile(filepath.Join(root, chartDir, "crds", filepath.Base(p)))
			Expect(err).NotTo(HaveOccurred())
			Expect(string(b)).To(Equal(string(a)), "%s in the chart differs from config/crd/bases; run make manifests", filepath.Base(p))
		}

		crd := mustTemplate("").get("CustomResourceDefinition", "workerpools.workers.softreload.dev")
		wantCRD := readObjects("config/crd/bases/workers.softreload.dev_workerpools.yaml")
		Expect(crd.Object).To(BeComparableTo(wantCRD[0].Object), "rendered CRD, against config's")
	})

	// The manager's ClusterRole has exactly the rules controller-gen
	// generated.
	It("is the manager's ClusterRole's rules, bound to its account", func() {
		want := readObjects("config/rbac/role.yaml")
		Expect(want).To(HaveLen(1), "config/rbac/role.yaml's objects")
		got := mustTemplate("").get("ClusterRole", "softreload-manager-role")
		Expect(got.Object["rules"]).To(BeComparableTo(want[0].Object["rules"]), "softreload-manager-role rules, against config/rbac/role.yaml; run make manifests")
		binding := mustTemplate("").get("ClusterRoleBinding", "softreload-manager-rolebinding")
		Expect(binding.Object["subjects"]).To(BeComparableTo([]any{
			map[string]any{"kind": "ServiceAccount", "name": "softreload-manager", "namespace": namespace},
		}), "softreload-manager-rolebinding subjects")
	})

	// The agents' admission policy is config/policy's.
	It("is the agents' admission policy", func() {
		objs := mustTemplate("")
		for _, w := range readObjects("config/policy/agent-pod-policy.yaml") {
			got := objs.get(w.GetKind(), w.GetName())
			Expect(got.Object).To(BeComparableTo(w.Object), "%s/%s, against config/policy", w.GetKind(), w.GetName())
		}
	})
})

// Installed into another namespace, nothing points at softreload-system:
// the webhook's Service, the bindings' subjects and the certificate's
// names follow the release.
var _ = DescribeTable("The chart follows the release's namespace",
	func(values string) {
		out, err := helm("template", "softreload", chartDir, "--namespace", "ops", "--include-crds", "--values", valuesFile(values))
		Expect(err).NotTo(HaveOccurred())
		Expect(out).NotTo(ContainSubstring(namespace), "rendered into namespace ops, the chart still names %s", namespace)
		objs := decode(out)
		Expect(webhook(objs)["clientConfig"].(map[string]any)["service"].(map[string]any)["namespace"]).To(Equal("ops"), "the namespace of the Service the webhook calls")
	},
	Entry("defaults", ""),
	Entry("cert-manager", certManagerValues+"metrics:\n  serviceMonitor:\n    enabled: true\n"),
)
