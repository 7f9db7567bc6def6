package v1alpha1_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
)

// TestCRD installs the generated CRD into a real API server and checks what
// users rely on: bad WorkerPools are refused with a message that names the
// field, the samples are accepted as they are, and defaults are filled in.
func TestCRD(t *testing.T) {
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	c := env.Client
	ctx := context.Background()

	t.Run("refuses invalid specs", func(t *testing.T) { testInvalidSpecs(ctx, t, c) })
	t.Run("refuses the listen addresses that conflict", func(t *testing.T) { testListenConflicts(ctx, t, c) })
	t.Run("accepts the samples", func(t *testing.T) { testSamples(ctx, t, c) })
	t.Run("fills in defaults", func(t *testing.T) { testDefaults(ctx, t, c) })
}

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

func testInvalidSpecs(ctx context.Context, t *testing.T, c client.Client) {
	cases := map[string]struct {
		mutate func(obj map[string]any)
		// field is the path the API server must name; message is what it must
		// say about it.
		field, message string
	}{
		"duplicate group names": {
			mutate: func(o map[string]any) { group(o, 1)["name"] = "http" },
			field:  "spec.groups[1]", message: "Duplicate value",
		},
		"count below 1": {
			mutate: func(o map[string]any) { group(o, 0)["count"] = int64(0) },
			field:  "spec.groups[0].count", message: "greater than or equal to 1",
		},
		"count absurdly high": {
			mutate: func(o map[string]any) { group(o, 0)["count"] = int64(100000) },
			field:  "spec.groups[0].count", message: "less than or equal to 256",
		},
		"no code source": {
			mutate: func(o map[string]any) { spec(o)["code"] = map[string]any{} },
			field:  "spec.code", message: "set exactly one of configMapRef or image",
		},
		"two code sources": {
			mutate: func(o map[string]any) {
				spec(o)["code"].(map[string]any)["image"] = map[string]any{"reference": "registry.example/code:v1"}
			},
			field: "spec.code", message: "set exactly one of configMapRef or image",
		},
		"listen address with an unknown scheme": {
			mutate: func(o map[string]any) { group(o, 0)["listen"] = []any{"http://127.0.0.1:8080"} },
			field:  "spec.groups[0].listen[0]", message: "must be tcp://HOST:PORT",
		},
		"listen address without a port": {
			mutate: func(o map[string]any) { group(o, 0)["listen"] = []any{"tcp://127.0.0.1"} },
			field:  "spec.groups[0].listen[0]", message: "must be tcp://HOST:PORT",
		},
		"listen port out of range": {
			mutate: func(o map[string]any) { group(o, 0)["listen"] = []any{"tcp://:70000"} },
			field:  "spec.groups[0].listen[0]", message: "port 1-65535",
		},
		"relative unix socket path": {
			mutate: func(o map[string]any) { group(o, 0)["listen"] = []any{"unix://run/app.sock"} },
			field:  "spec.groups[0].listen[0]", message: "unix:///absolute/path",
		},
		"one address in two groups": {
			mutate: func(o map[string]any) { group(o, 1)["listen"] = []any{"tcp://127.0.0.1:8080"} },
			field:  "spec.groups", message: "two groups listen on the same address",
		},
		"a wildcard host and a specific one on one port": {
			mutate: func(o map[string]any) {
				group(o, 0)["listen"] = []any{"tcp://0.0.0.0:80"}
				group(o, 1)["listen"] = []any{"tcp://127.0.0.1:80"}
			},
			field: "spec.groups", message: "two listen addresses cannot both be bound",
		},
		"a wildcard host and a specific one on one port, in one group": {
			mutate: func(o map[string]any) { group(o, 0)["listen"] = []any{"tcp://127.0.0.1:80", "tcp://[::]:80"} },
			field:  "spec.groups", message: "two listen addresses cannot both be bound",
		},
		"empty selector": {
			mutate: func(o map[string]any) { spec(o)["selector"] = map[string]any{} },
			field:  "spec.selector", message: "must not be empty",
		},
		"selector with empty lists": {
			mutate: func(o map[string]any) {
				spec(o)["selector"] = map[string]any{"matchLabels": map[string]any{}, "matchExpressions": []any{}}
			},
			field: "spec.selector", message: "must not be empty",
		},
		"LISTEN_FDS in a group's env": {
			mutate: func(o map[string]any) { group(o, 0)["env"] = []any{map[string]any{"name": "LISTEN_FDS", "value": "3"}} },
			field:  "spec.groups[0].env[0].name", message: "reserved",
		},
		"LISTEN_PID in a group's env": {
			mutate: func(o map[string]any) { group(o, 1)["env"] = []any{map[string]any{"name": "LISTEN_PID"}} },
			field:  "spec.groups[1].env[0].name", message: "reserved",
		},
		"LISTEN_FDNAMES in a group's env": {
			mutate: func(o map[string]any) {
				group(o, 0)["env"] = []any{map[string]any{"name": "APP"}, map[string]any{"name": "LISTEN_FDNAMES"}}
			},
			field: "spec.groups[0].env[1].name", message: "reserved",
		},
		"NOTIFY_SOCKET in a group's env": {
			mutate: func(o map[string]any) { group(o, 0)["env"] = []any{map[string]any{"name": "NOTIFY_SOCKET"}} },
			field:  "spec.groups[0].env[0].name", message: "reserved",
		},
		"a SOFTRELOAD_ name in a group's env": {
			mutate: func(o map[string]any) { group(o, 0)["env"] = []any{map[string]any{"name": "SOFTRELOAD_REVISION"}} },
			field:  "spec.groups[0].env[0].name", message: "reserved",
		},
		"one address twice in a group": {
			mutate: func(o map[string]any) {
				group(o, 0)["listen"] = []any{"tcp://127.0.0.1:8080", "tcp://127.0.0.1:8080"}
			},
			field: "spec.groups[0].listen[1]", message: "Duplicate value",
		},
		"unknown stop signal": {
			mutate: func(o map[string]any) { group(o, 0)["stopSignal"] = "SIGFOO" },
			field:  "spec.groups[0].stopSignal", message: `Unsupported value: "SIGFOO"`,
		},
		"stop timeout of zero": {
			mutate: func(o map[string]any) { group(o, 0)["stopTimeoutSeconds"] = int64(0) },
			field:  "spec.groups[0].stopTimeoutSeconds", message: "greater than or equal to 1",
		},
		"stop timeout above an hour": {
			mutate: func(o map[string]any) { group(o, 0)["stopTimeoutSeconds"] = int64(7200) },
			field:  "spec.groups[0].stopTimeoutSeconds", message: "less than or equal to 3600",
		},
		"readiness timeout of zero": {
			mutate: func(o map[string]any) { group(o, 0)["readiness"] = map[string]any{"timeoutSeconds": int64(0)} },
			field:  "spec.groups[0].readiness.timeoutSeconds", message: "greater than or equal to 1",
		},
		"readiness delay not below its timeout": {
			mutate: func(o map[string]any) {
				group(o, 0)["readiness"] = map[string]any{"type": "Delay", "delaySeconds": int64(30), "timeoutSeconds": int64(30)}
			},
			field: "spec.groups[0].readiness", message: "delaySeconds must be less than timeoutSeconds",
		},
		"unknown readiness type": {
			mutate: func(o map[string]any) { group(o, 0)["readiness"] = map[string]any{"type": "HTTP"} },
			field:  "spec.groups[0].readiness.type", message: `Unsupported value: "HTTP"`,
		},
		"maxUnavailable of 0": {
			mutate: func(o map[string]any) { spec(o)["strategy"] = map[string]any{"maxUnavailable": int64(0)} },
			field:  "spec.strategy.maxUnavailable", message: "must be a number above 0 or a percentage",
		},
		"maxUnavailable of 0%": {
			mutate: func(o map[string]any) { spec(o)["strategy"] = map[string]any{"maxUnavailable": "0%"} },
			field:  "spec.strategy.maxUnavailable", message: "must be a number above 0 or a percentage",
		},
		"maxUnavailable that is not a percentage": {
			mutate: func(o map[string]any) { spec(o)["strategy"] = map[string]any{"maxUnavailable": "ten"} },
			field:  "spec.strategy.maxUnavailable", message: "must be a number above 0 or a percentage",
		},
		"unknown replacement": {
			mutate: func(o map[string]any) { spec(o)["strategy"] = map[string]any{"replacement": "AllAtOnce"} },
			field:  "spec.strategy.replacement", message: `Unsupported value: "AllAtOnce"`,
		},
		"maxSurge of 0": {
			mutate: func(o map[string]any) { spec(o)["strategy"] = map[string]any{"maxSurge": int64(0)} },
			field:  "spec.strategy.maxSurge", message: "greater than or equal to 1",
		},
		"progress deadline too short": {
			mutate: func(o map[string]any) { spec(o)["strategy"] = map[string]any{"progressDeadlineSeconds": int64(1)} },
			field:  "spec.strategy.progressDeadlineSeconds", message: "greater than or equal to 10",
		},
		"unknown rollback policy": {
			mutate: func(o map[string]any) { spec(o)["strategy"] = map[string]any{"rollback": "Sometimes"} },
			field:  "spec.strategy.rollback", message: `Unsupported value: "Sometimes"`,
		},
		"empty command": {
			mutate: func(o map[string]any) { group(o, 0)["command"] = []any{} },
			field:  "spec.groups[0].command", message: "should have at least 1 items",
		},
		"empty program": {
			mutate: func(o map[string]any) { group(o, 0)["command"] = []any{"", "server.py"} },
			field:  "spec.groups[0].command", message: "the program (the first item) must not be empty",
		},
		"no groups": {
			mutate: func(o map[string]any) { spec(o)["groups"] = []any{} },
			field:  "spec.groups", message: "should have at least 1 items",
		},
		"group name that is not a DNS label": {
			mutate: func(o map[string]any) { group(o, 0)["name"] = "Web_1" },
			field:  "spec.groups[0].name", message: "should match",
		},
		"negative history limit": {
			mutate: func(o map[string]any) { spec(o)["revisionHistoryLimit"] = int64(-1) },
			field:  "spec.revisionHistoryLimit", message: "greater than or equal to 0",
		},
		"relative code path in an image": {
			mutate: func(o map[string]any) {
				spec(o)["code"] = map[string]any{"image": map[string]any{"reference": "registry.example/code:v1", "path": "code"}}
			},
			field: "spec.code.image.path", message: "must be an absolute path",
		},
		"invalid ConfigMap name": {
			mutate: func(o map[string]any) {
				spec(o)["code"] = map[string]any{"configMapRef": map[string]any{"name": "Web Code"}}
			},
			field: "spec.code.configMapRef.name", message: "should match",
		},
		"no selector": {
			mutate: func(o map[string]any) { delete(spec(o), "selector") },
			field:  "spec.selector", message: "Required value",
		},
		"duplicate environment variable": {
			mutate: func(o map[string]any) {
				group(o, 0)["env"] = []any{map[string]any{"name": "A", "value": "1"}, map[string]any{"name": "A", "value": "2"}}
			},
			field: "spec.groups[0].env[1]", message: "Duplicate value",
		},
	}
	i := 0
	for name, tc := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			obj := validPool(fmt.Sprintf("invalid-%d", i))
			tc.mutate(obj)
			err := c.Create(ctx, &unstructured.Unstructured{Object: obj}, client.DryRunAll)
			if err == nil {
				t.Fatalf("the API server accepted the pool; want it refused at %s", tc.field)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q\nwant it to name %q and say %q", err, tc.field, tc.message)
			}
		})
	}

	// The valid pool itself must pass, or every case above proves nothing.
	if err := c.Create(ctx, &unstructured.Unstructured{Object: validPool("valid")}, client.DryRunAll); err != nil {
		t.Fatalf("the valid pool the cases start from is refused: %v", err)
	}
}

// testListenConflicts runs TestListenConflict's table against the CRD's
// rule: the API server refuses exactly the pairs that ListenConflict (and so
// a standalone agent's config) refuses.
func testListenConflicts(ctx context.Context, t *testing.T, c client.Client) {
	for i, tc := range ListenConflicts {
		obj := validPool(fmt.Sprintf("listen-%d", i))
		group(obj, 0)["listen"] = []any{string(tc.A)}
		group(obj, 1)["listen"] = []any{string(tc.B)}
		err := c.Create(ctx, &unstructured.Unstructured{Object: obj}, client.DryRunAll)
		switch {
		case tc.Conflict && err == nil:
			t.Errorf("%s beside %s: accepted, want refused", tc.A, tc.B)
		case tc.Conflict && (!strings.Contains(err.Error(), "spec.groups: ") || !strings.Contains(err.Error(), "cannot both be bound")):
			t.Errorf("%s beside %s: %v, want spec.groups named", tc.A, tc.B, err)
		case !tc.Conflict && err != nil:
			t.Errorf("%s beside %s: %v, want accepted", tc.A, tc.B, err)
		}
	}
}

func testSamples(ctx context.Context, t *testing.T, c client.Client) {
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "workers_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples in config/samples (err %v)", err)
	}
	// The pool of the Kubernetes walkthrough is applied as it is too.
	files = append(files, filepath.Join(root, exampleDir, "workerpool.yaml"))
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			obj := &unstructured.Unstructured{}
			if err := yaml.Unmarshal(data, &obj.Object); err != nil {
				t.Fatalf("parsing the sample: %v", err)
			}
			obj.SetNamespace("default")
			if err := c.Create(ctx, obj); err != nil {
				t.Fatalf("the API server refused the sample: %v", err)
			}
			// The typed API reads back what the server stored.
			pool := &workersv1alpha1.WorkerPool{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(obj), pool); err != nil {
				t.Fatal(err)
			}
			if len(pool.Spec.Groups) == 0 {
				t.Errorf("the stored sample has no groups")
			}
		})
	}
}

func testDefaults(ctx context.Context, t *testing.T, c client.Client) {
	pool := &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Name: "minimal", Namespace: "default"},
		Spec: workersv1alpha1.WorkerPoolSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "minimal"}},
			Code:     workersv1alpha1.CodeSource{Image: &workersv1alpha1.ImageCodeSource{Reference: "registry.example/code:v1"}},
			Groups:   []workersv1alpha1.WorkerGroup{{Name: "worker", Command: []string{"./worker"}}},
		},
	}
	if err := c.Create(ctx, pool); err != nil {
		t.Fatalf("creating a minimal pool: %v", err)
	}
	got := &workersv1alpha1.WorkerPool{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(pool), got); err != nil {
		t.Fatal(err)
	}
	want := workersv1alpha1.WorkerPoolSpec{
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
		},
		RevisionHistoryLimit: ptr.To[int32](10),
	}
	if diff := cmp.Diff(want, got.Spec); diff != "" {
		t.Errorf("defaults the API server filled in (-want +got):\n%s", diff)
	}
}

// exampleDir is the Kubernetes walkthrough, relative to the repository.
const exampleDir = "examples/kubernetes"

// TestKubernetesExample keeps the walkthrough's kustomization applicable:
// every file it names exists, it makes the code ConfigMap under the name
// the WorkerPool refers to, and the Deployment's pods are the pool's.
func TestKubernetesExample(t *testing.T) {
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
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
	readYAML(t, filepath.Join(dir, "kustomization.yaml"), &k)
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
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("kustomization.yaml names %s: %v", f, err)
		}
	}

	pool := &workersv1alpha1.WorkerPool{}
	readYAML(t, filepath.Join(dir, "workerpool.yaml"), pool)
	if ref := pool.Spec.Code.ConfigMapRef; ref == nil || !slices.Contains(generated, ref.Name) || !k.GeneratorOptions.DisableNameSuffixHash {
		t.Errorf("the pool's code ConfigMap is %+v; want one of the generated %v, named without a hash suffix (disableNameSuffixHash %v)",
			ref, generated, k.GeneratorOptions.DisableNameSuffixHash)
	}

	var deployment *appsv1.Deployment
	data, err := os.ReadFile(filepath.Join(dir, "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		d := &appsv1.Deployment{}
		if err := yaml.Unmarshal([]byte(doc), d); err != nil {
			t.Fatalf("parsing deployment.yaml: %v", err)
		}
		if d.Kind == "Deployment" {
			deployment = d
		}
	}
	if deployment == nil {
		t.Fatal("deployment.yaml has no Deployment")
	}
	template := deployment.Spec.Template
	selector, err := metav1.LabelSelectorAsSelector(&pool.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !selector.Matches(labels.Set(template.Labels)) || template.Labels[workersv1alpha1.PoolLabel] != pool.Name {
		t.Errorf("the pod template's labels %v: want them to match the pool's selector %s and %s=%s",
			template.Labels, selector, workersv1alpha1.PoolLabel, pool.Name)
	}
	if !slices.ContainsFunc(template.Spec.Containers, func(c corev1.Container) bool { return c.Name == pool.Spec.Container }) {
		t.Errorf("the pod template has no container %q, the pool's spec.container", pool.Spec.Container)
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
}
