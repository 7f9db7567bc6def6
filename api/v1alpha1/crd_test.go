package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// validPool is a WorkerPool the API server accepts; each invalid case breaks
// one thing in it.
func validPool(name string) map[string]any {
	return map[string]any{
		"apiVersion": "workers.softreload.dev/v1alpha1",
		"kind":       "WorkerPool",
		"metadata":   map[string]any{"name": name, "namespace": "default"},
		"spec": map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
			"code":     map[string]any{"configMapRef": map[string]any{"name": "web-code"}},
			"groups": []any{
				map[string]any{
					"name":    "http",
					"command": []any{"./server"},
					"count":   int64(2),
					"listen":  []any{"tcp://127.0.0.1:8080"},
				},
				map[string]any{
					"name":       "gateway",
					"command":    []any{"./gateway"},
					"reloadable": false,
					"listen":     []any{"unix:///run/gw.sock"},
				},
			},
		},
	}
}

func group(obj map[string]any, i int) map[string]any {
	return obj["spec"].(map[string]any)["groups"].([]any)[i].(map[string]any)
}

func spec(obj map[string]any) map[string]any { return obj["spec"].(map[string]any) }

// dryRun asks the API server to create obj without storing it.
func dryRun(obj map[string]any) error {
	return env.Client.Create(context.Background(), &unstructured.Unstructured{Object: obj}, client.DryRunAll)
}

// The generated CRD installed into a real API server, checked for what
// users rely on: bad WorkerPools are refused with a message that names the
// field, the samples are accepted as they are, and defaults are filled in.
var _ = Describe("The WorkerPool CRD", Label(suite.ControlPlane), func() {
	// The valid pool itself must pass, or every refusal below proves
	// nothing.
	It("accepts the valid pool the refused ones start from", func() {
		Expect(dryRun(validPool("valid"))).To(Succeed(), "the valid pool the cases start from is refused")
	})

	invalid := 0
	DescribeTable("refuses an invalid spec, naming the field",
		// field is the path the API server must name; message is what it
		// must say about it.
		func(mutate func(obj map[string]any), field, message string) {
			invalid++
			obj := validPool(fmt.Sprintf("invalid-%d", invalid))
			mutate(obj)
			err := dryRun(obj)
			Expect(err).To(HaveOccurred(), "the API server accepted the pool; want it refused at %s", field)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got %v", err)
			Expect(err.Error()).To(SatisfyAll(ContainSubstring(field+": "), ContainSubstring(message)),
				"want the error to name %q and say %q", field, message)
		},
		Entry("duplicate group names", func(o map[string]any) { group(o, 1)["name"] = "http" },
			"spec.groups[1]", "Duplicate value"),
		Entry("count below 1", func(o map[string]any) { group(o, 0)["count"] = int64(0) },
			"spec.groups[0].count", "greater than or equal to 1"),
		Entry("count absurdly high", func(o map[string]any) { group(o, 0)["count"] = int64(100000) },
			"spec.groups[0].count", "less than or equal to 256"),
		Entry("no code source", func(o map[string]any) { spec(o)["code"] = map[string]any{} },
			"spec.code", "set exactly one of configMapRef or image"),
		Entry("two code sources", func(o map[string]any) {
			spec(o)["code"].(map[string]any)["image"] = map[string]any{"reference": "registry.example/code:v1"}
		},
			"spec.code", "set exactly one of configMapRef or image"),
		Entry("listen address with an unknown scheme", func(o map[string]any) { group(o, 0)["listen"] = []any{"http://127.0.0.1:8080"} },
			"spec.groups[0].listen[0]", "must be tcp://HOST:PORT"),
		Entry("listen address without a port", func(o map[string]any) { group(o, 0)["listen"] = []any{"tcp://127.0.0.1"} },
			"spec.groups[0].listen[0]", "must be tcp://HOST:PORT"),
		Entry("listen port out of range", func(o map[string]any) { group(o, 0)["listen"] = []any{"tcp://:70000"} },
			"spec.groups[0].listen[0]", "port 1-65535"),
		Entry("relative unix socket path", func(o map[string]any) { group(o, 0)["listen"] = []any{"unix://run/app.sock"} },
			"spec.groups[0].listen[0]", "unix:///absolute/path"),
		Entry("one address in two groups", func(o map[string]any) { group(o, 1)["listen"] = []any{"tcp://127.0.0.1:8080"} },
			"spec.groups", "two groups listen on the same address"),
		Entry("a wildcard host and a specific one on one port", func(o map[string]any) {
			group(o, 0)["listen"] = []any{"tcp://0.0.0.0:80"}
			group(o, 1)["listen"] = []any{"tcp://127.0.0.1:80"}
		},
			"spec.groups", "two listen addresses cannot both be bound"),
		Entry("a wildcard host and a specific one on one port, in one group", func(o map[string]any) { group(o, 0)["listen"] = []any{"tcp://127.0.0.1:80", "tcp://[::]:80"} },
			"spec.groups", "two listen addresses cannot both be bound"),
		Entry("empty selector", func(o map[string]any) { spec(o)["selector"] = map[string]any{} },
			"spec.selector", "must not be empty"),
		Entry("selector with empty lists", func(o map[string]any) {
			spec(o)["selector"] = map[string]any{"matchLabels": map[string]any{}, "matchExpressions": []any{}}
		},
			"spec.selector", "must not be empty"),
		Entry("LISTEN_FDS in a group's env", func(o map[string]any) { group(o, 0)["env"] = []any{map[string]any{"name": "LISTEN_FDS", "value": "3"}} },
			"spec.groups[0].env[0].name", "reserved"),
		Entry("LISTEN_PID in a group's env", func(o map[string]any) { group(o, 1)["env"] = []any{map[string]any{"name": "LISTEN_PID"}} },
			"spec.groups[1].env[0].name", "reserved"),
		Entry("LISTEN_FDNAMES in a group's env", func(o map[string]any) {
			group(o, 0)["env"] = []any{map[string]any{"name": "APP"}, map[string]any{"name": "LISTEN_FDNAMES"}}
		},
			"spec.groups[0].env[1].name", "reserved"),
		Entry("NOTIFY_SOCKET in a group's env", func(o map[string]any) { group(o, 0)["env"] = []any{map[string]any{"name": "NOTIFY_SOCKET"}} },
			"spec.groups[0].env[0].name", "reserved"),
		Entry("a SOFTRELOAD_ name in a group's env", func(o map[string]any) { group(o, 0)["env"] = []any{map[string]any{"name": "SOFTRELOAD_REVISION"}} },
			"spec.groups[0].env[0].name", "reserved"),
		Entry("one address twice in a group", func(o map[string]any) {
			group(o, 0)["listen"] = []any{"tcp://127.0.0.1:8080", "tcp://127.0.0.1:8080"}
		},
			"spec.groups[0].listen[1]", "Duplicate value"),
		Entry("unknown stop signal", func(o map[string]any) { group(o, 0)["stopSignal"] = "SIGFOO" },
			"spec.groups[0].stopSignal", `Unsupported value: "SIGFOO"`),
		Entry("stop timeout of zero", func(o map[string]any) { group(o, 0)["stopTimeoutSeconds"] = int64(0) },
			"spec.groups[0].stopTimeoutSeconds", "greater than or equal to 1"),
		Entry("stop timeout above an hour", func(o map[string]any) { group(o, 0)["stopTimeoutSeconds"] = int64(7200) },
			"spec.groups[0].stopTimeoutSeconds", "less than or equal to 3600"),
		Entry("readiness timeout of zero", func(o map[string]any) { group(o, 0)["readiness"] = map[string]any{"timeoutSeconds": int64(0)} },
			"spec.groups[0].readiness.timeoutSeconds", "greater than or equal to 1"),
		Entry("readiness delay not below its timeout", func(o map[string]any) {
			group(o, 0)["readiness"] = map[string]any{"type": "Delay", "delaySeconds": int64(30), "timeoutSeconds": int64(30)}
		},
			"spec.groups[0].readiness", "delaySeconds must be less than timeoutSeconds"),
		Entry("unknown readiness type", func(o map[string]any) { group(o, 0)["readiness"] = map[string]any{"type": "HTTP"} },
			"spec.groups[0].readiness.type", `Unsupported value: "HTTP"`),
		Entry("maxUnavailable of 0", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"maxUnavailable": int64(0)} },
			"spec.strategy.maxUnavailable", "must be a number above 0 or a percentage"),
		Entry("maxUnavailable of 0%", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"maxUnavailable": "0%"} },
			"spec.strategy.maxUnavailable", "must be a number above 0 or a percentage"),
		Entry("maxUnavailable that is not a percentage", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"maxUnavailable": "ten"} },
			"spec.strategy.maxUnavailable", "must be a number above 0 or a percentage"),
		Entry("unknown replacement", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"replacement": "AllAtOnce"} },
			"spec.strategy.replacement", `Unsupported value: "AllAtOnce"`),
		Entry("maxSurge of 0", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"maxSurge": int64(0)} },
			"spec.strategy.maxSurge", "greater than or equal to 1"),
		Entry("progress deadline too short", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"progressDeadlineSeconds": int64(1)} },
			"spec.strategy.progressDeadlineSeconds", "greater than or equal to 10"),
		Entry("unknown rollback policy", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"rollback": "Sometimes"} },
			"spec.strategy.rollback", `Unsupported value: "Sometimes"`),
		Entry("unknown pod replacement", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"podReplacement": "Recreate"} },
			"spec.strategy.podReplacement", `Unsupported value: "Recreate"`),
		Entry("pod replacement in the wrong case", func(o map[string]any) { spec(o)["strategy"] = map[string]any{"podReplacement": "evict"} },
			"spec.strategy.podReplacement", `supported values: "Hold", "Evict"`),
		Entry("empty command", func(o map[string]any) { group(o, 0)["command"] = []any{} },
			"spec.groups[0].command", "should have at least 1 items"),
		Entry("empty program", func(o map[string]any) { group(o, 0)["command"] = []any{"", "server.py"} },
			"spec.groups[0].command", "the program (the first item) must not be empty"),
		Entry("no groups", func(o map[string]any) { spec(o)["groups"] = []any{} },
			"spec.groups", "should have at least 1 items"),
		Entry("group name that is not a DNS label", func(o map[string]any) { group(o, 0)["name"] = "Web_1" },
			"spec.groups[0].name", "should match"),
		Entry("negative history limit", func(o map[string]any) { spec(o)["revisionHistoryLimit"] = int64(-1) },
			"spec.revisionHistoryLimit", "greater than or equal to 0"),
		Entry("relative code path in an image", func(o map[string]any) {
			spec(o)["code"] = map[string]any{"image": map[string]any{"reference": "registry.example/code:v1", "path": "code"}}
		},
			"spec.code.image.path", "must be an absolute path"),
		Entry("invalid ConfigMap name", func(o map[string]any) {
			spec(o)["code"] = map[string]any{"configMapRef": map[string]any{"name": "Web Code"}}
		},
			"spec.code.configMapRef.name", "should match"),
		Entry("no selector", func(o map[string]any) { delete(spec(o), "selector") },
			"spec.selector", "Required value"),
		Entry("duplicate environment variable", func(o map[string]any) {
			group(o, 0)["env"] = []any{map[string]any{"name": "A", "value": "1"}, map[string]any{"name": "A", "value": "2"}}
		},
			"spec.groups[0].env[1]", "Duplicate value"),
	)

	// The table of ListenConflict run against the CRD's rule: the API
	// server refuses exactly the pairs that ListenConflict (and so a
	// standalone agent's config) refuses.
	listen := 0
	DescribeTable("refuses the listen addresses that conflict, and only those",
		func(a, b workersv1alpha1.ListenAddress, conflict bool) {
			listen++
			obj := validPool(fmt.Sprintf("listen-%d", listen))
			group(obj, 0)["listen"] = []any{string(a)}
			group(obj, 1)["listen"] = []any{string(b)}
			err := dryRun(obj)
			if !conflict {
				Expect(err).NotTo(HaveOccurred(), "%s beside %s: want accepted", a, b)
				return
			}
			Expect(err).To(HaveOccurred(), "%s beside %s: accepted, want refused", a, b)
			Expect(err.Error()).To(SatisfyAll(ContainSubstring("spec.groups: "), ContainSubstring("cannot both be bound")),
				"%s beside %s: want spec.groups named", a, b)
		},
		listenConflictEntries(),
	)

	DescribeTable("accepts the samples as they are",
		func(file string) {
			data, err := os.ReadFile(file)
			Expect(err).NotTo(HaveOccurred())
			obj := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(data, &obj.Object)).To(Succeed(), "parsing the sample")
			obj.SetNamespace("default")
			ctx := context.Background()
			Expect(env.Client.Create(ctx, obj)).To(Succeed(), "the API server refused the sample")
			// The typed API reads back what the server stored.
			pool := &workersv1alpha1.WorkerPool{}
			Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(obj), pool)).To(Succeed())
			Expect(pool.Spec.Groups).NotTo(BeEmpty(), "the stored sample has no groups")
		},
		sampleEntries(),
	)

	It("fills in defaults", func() {
		ctx := context.Background()
		pool := &workersv1alpha1.WorkerPool{
			ObjectMeta: metav1.ObjectMeta{Name: "minimal", Namespace: "default"},
			Spec: workersv1alpha1.WorkerPoolSpec{
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "minimal"}},
				Code:     workersv1alpha1.CodeSource{Image: &workersv1alpha1.ImageCodeSource{Reference: "registry.example/code:v1"}},
				Groups:   []workersv1alpha1.WorkerGroup{{Name: "worker", Command: []string{"./worker"}}},
			},
		}
		Expect(env.Client.Create(ctx, pool)).To(Succeed(), "creating a minimal pool")
		got := &workersv1alpha1.WorkerPool{}
		Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(pool), got)).To(Succeed())
		Expect(got.Spec).To(BeComparableTo(workersv1alpha1.WorkerPoolSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "minimal"}},
			Code: workersv1alpha1.CodeSource{Image: &workersv1alpha1.ImageCodeSource{
				Reference: "registry.example/code:v1", Path: "/code",
			}},
			Groups: []workersv1alpha1.WorkerGroup{{
				Name:       "worker",
				Command:    []string{"./worker"},
				Count:      1,
				Reloadable: ptr.To(true),
				Readiness: workersv1alpha1.Readiness{
					Type: workersv1alpha1.ReadinessDelay, DelaySeconds: ptr.To[int32](1), TimeoutSeconds: 60,
				},
				StopSignal:         "SIGTERM",
				StopTimeoutSeconds: 30,
			}},
			Strategy: workersv1alpha1.RolloutStrategy{
				MaxUnavailable:          ptr.To(intstr.FromInt32(1)),
				Replacement:             workersv1alpha1.SurgeFirst,
				MaxSurge:                1,
				ProgressDeadlineSeconds: 600,
				Rollback:                workersv1alpha1.RollbackAuto,
				PodReplacement:          workersv1alpha1.PodReplacementHold,
			},
			RevisionHistoryLimit: ptr.To[int32](10),
		}), "defaults the API server filled in")
	})
})

// listenConflictEntries are the entries of ListenConflicts.
func listenConflictEntries() []TableEntry {
	entries := make([]TableEntry, 0, len(ListenConflicts))
	for _, tc := range ListenConflicts {
		entries = append(entries, Entry(fmt.Sprintf("%s beside %s", tc.A, tc.B), tc.A, tc.B, tc.Conflict))
	}
	return entries
}

// samples are the WorkerPools of config/samples.
func samples() ([]string, error) {
	root, err := envtest.RepoRoot()
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "workers_*.yaml"))
	if err == nil && len(files) == 0 {
		err = fmt.Errorf("no samples in %s", filepath.Join(root, "config", "samples"))
	}
	return files, err
}

// sampleEntries are an entry for each sample and for the pool of the
// Kubernetes walkthrough, which is applied as it is too. Samples that
// cannot be found fail the spec of config/samples.
func sampleEntries() []TableEntry {
	files, _ := samples()
	root, err := envtest.RepoRoot()
	if err == nil {
		files = append(files, filepath.Join(root, exampleDir, "workerpool.yaml"))
	}
	entries := make([]TableEntry, 0, len(files))
	for _, file := range files {
		entries = append(entries, Entry(filepath.Base(file), file))
	}
	return entries
}

var _ = Describe("config/samples", func() {
	It("holds WorkerPool samples", func() {
		files, err := samples()
		Expect(err).NotTo(HaveOccurred())
		Expect(files).NotTo(BeEmpty())
	})
})

// exampleDir is the Kubernetes walkthrough, relative to the repository.
const exampleDir = "examples/kubernetes"

// The walkthrough's kustomization stays applicable: every file it names
// exists, it makes the code ConfigMap under the name the WorkerPool refers
// to, and the Deployment's pods are the pool's.
var _ = Describe("The Kubernetes walkthrough", func() {
	It("names only files that exist, makes the pool's code ConfigMap and runs the pool's pods", func() {
		root, err := envtest.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		dir := filepath.Join(root, exampleDir)
		var k struct {
			Resources          []string `json:"resources"`
			ConfigMapGenerator []struct {
				Name  string   `json:"name"`
				Files []string `json:"files"`
			} `json:"configMapGenerator"`
			GeneratorOptions struct {
				DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
			} `json:"generatorOptions"`
		}
		readYAML(filepath.Join(dir, "kustomization.yaml"), &k)
		named := slices.Clone(k.Resources)
		var generated []string
		for _, g := range k.ConfigMapGenerator {
			generated = append(generated, g.Name)
			for _, f := range g.Files {
				_, path, found := strings.Cut(f, "=") // KEY=PATH or PATH
				if !found {
					path = f
				}
				named = append(named, path)
			}
		}
		for _, f := range named {
			Expect(filepath.Join(dir, f)).To(BeAnExistingFile(), "kustomization.yaml names %s", f)
		}

		pool := &workersv1alpha1.WorkerPool{}
		readYAML(filepath.Join(dir, "workerpool.yaml"), pool)
		ref := pool.Spec.Code.ConfigMapRef
		Expect(ref != nil && slices.Contains(generated, ref.Name) && k.GeneratorOptions.DisableNameSuffixHash).To(BeTrue(),
			"the pool's code ConfigMap is %+v; want one of the generated %v, named without a hash suffix (disableNameSuffixHash %v)",
			ref, generated, k.GeneratorOptions.DisableNameSuffixHash)

		var deployment *appsv1.Deployment
		data, err := os.ReadFile(filepath.Join(dir, "deployment.yaml"))
		Expect(err).NotTo(HaveOccurred())
		for _, doc := range strings.Split(string(data), "\n---\n") {
			d := &appsv1.Deployment{}
			Expect(yaml.Unmarshal([]byte(doc), d)).To(Succeed(), "parsing deployment.yaml")
			if d.Kind == "Deployment" {
				deployment = d
			}
		}
		Expect(deployment).NotTo(BeNil(), "deployment.yaml has no Deployment")
		template := deployment.Spec.Template
		selector, err := metav1.LabelSelectorAsSelector(&pool.Spec.Selector)
		Expect(err).NotTo(HaveOccurred())
		Expect(selector.Matches(labels.Set(template.Labels)) && template.Labels[workersv1alpha1.PoolLabel] == pool.Name).To(BeTrue(),
			"the pod template's labels %v: want them to match the pool's selector %s and %s=%s",
			template.Labels, selector, workersv1alpha1.PoolLabel, pool.Name)
		Expect(template.Spec.Containers).To(ContainElement(HaveField("Name", pool.Spec.Container)),
			"the pod template has no container %q, the pool's spec.container", pool.Spec.Container)
	})
})

// readYAML reads a YAML file into into.
func readYAML(path string, into any) {
	GinkgoHelper()
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	Expect(yaml.Unmarshal(data, into)).To(Succeed(), "parsing %s", path)
}
