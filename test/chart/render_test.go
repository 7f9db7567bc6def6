package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/softreload/softreload/internal/testing/envtest"
)

const (
	chartDir  = "charts/softreload"
	namespace = "softreload-system"
)

// root is the repository's root; every path below is relative to it.
var root = func() string {
	r, err := envtest.RepoRoot()
	if err != nil {
		panic(err)
	}
	return r
}()

var helmOnce = sync.OnceValues(func() (string, error) {
	return toolPath("helm")
})

// toolPath asks hack/tools.sh for a pinned tool, building it if needed.
func toolPath(tool string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(root, "hack", "tools.sh"), "--path", tool)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/tools.sh --path %s: %w: %s", tool, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// helm runs the pinned helm in the repository's root with its state in
// temporary directories, and returns its standard output.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin, err := helmOnce()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// template renders the chart as `helm install softreload -n
// softreload-system` would, CRDs included, with values given as YAML. The
// install's objects only: hooks (Helm's steps at install time, which
// kustomize has no counterpart of) are rendered by templateHooks.
func template(t *testing.T, values string) (objects, error) {
	t.Helper()
	return render(t, values, "--include-crds", "--no-hooks")
}

// render runs helm template with the values and extra flags.
func render(t *testing.T, values string, flags ...string) (objects, error) {
	t.Helper()
	args := append([]string{"template", "softreload", chartDir, "--namespace", namespace}, flags...)
	if values != "" {
		args = append(args, "--values", valuesFile(t, values))
	}
	out, err := helm(t, args...)
	if err != nil {
		return nil, err
	}
	return decode(t, out), nil
}

// valuesFile writes values into a file for --values. Not in t.TempDir():
// helm splits --values at commas, which subtest names may hold.
func valuesFile(t *testing.T, values string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "softreload-chart-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustTemplate(t *testing.T, values string) objects {
	t.Helper()
	objs, err := template(t, values)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// kustomize renders a kustomization directory with the kubectl of the test
// control plane.
func kustomize(t *testing.T, dir string) objects {
	t.Helper()
	assets, err := envtest.Assets(root)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(assets, "kubectl"), "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return decode(t, stdout.String())
}

// overlay writes a kustomization that builds on the repository's config/
// directories (resources and components, relative to config/) and returns
// its directory. kustomize refuses absolute paths, so they are relative.
func overlay(t *testing.T, resources, components []string) string {
	t.Helper()
	dir := t.TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(root, "config", p))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var b strings.Builder
	b.WriteString("resources:\n")
	for _, r := range resources {
		fmt.Fprintf(&b, "  - %s\n", rel(r))
	}
	if len(components) > 0 {
		b.WriteString("components:\n")
		for _, c := range components {
			fmt.Fprintf(&b, "  - %s\n", rel(c))
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// objects are rendered Kubernetes objects, in the order they came.
type objects []*unstructured.Unstructured

func decode(t *testing.T, manifests string) objects {
	t.Helper()
	var out objects
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if string(js) == "null" {
			continue // a document of comments only
		}
		// Unstructured keeps integers as int64, as the API server does.
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(js); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		out = append(out, o)
	}
}

// readObjects decodes the YAML file at path (relative to the root).
func readObjects(t *testing.T, path string) objects {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, string(data))
}

// ids are "Kind/name" of every object, sorted.
func (objs objects) ids() []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

// get returns the object of that kind and name, failing the test if there
// is not exactly one.
func (objs objects) get(t *testing.T, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d objects %s/%s rendered, want 1; rendered: %v", len(found), kind, name, objs.ids())
	}
	return found[0]
}

func (objs objects) has(kind, name string) bool {
	return slices.Contains(objs.ids(), kind+"/"+name)
}

// field reads a nested field, failing the test if it is missing.
func field(t *testing.T, o *unstructured.Unstructured, path ...string) any {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s/%s has no %s (err %v)", o.GetKind(), o.GetName(), strings.Join(path, "."), err)
	}
	return v
}

// container returns the manager container of the Deployment.
func managerContainer(t *testing.T, objs objects) map[string]any {
	t.Helper()
	d := objs.get(t, "Deployment", "softreload-manager")
	cs := field(t, d, "spec", "template", "spec", "containers").([]any)
	if len(cs) != 1 {
		t.Fatalf("the Deployment has %d containers, want 1", len(cs))
	}
	return cs[0].(map[string]any)
}

func args(t *testing.T, objs objects) []string {
	t.Helper()
	var out []string
	for _, a := range managerContainer(t, objs)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

// webhook returns the only webhook of softreload-injector.
func webhook(t *testing.T, objs objects) map[string]any {
	t.Helper()
	cfg := objs.get(t, "MutatingWebhookConfiguration", "softreload-injector")
	hooks := field(t, cfg, "webhooks").([]any)
	if len(hooks) != 1 {
		t.Fatalf("softreload-injector has %d webhooks, want 1", len(hooks))
	}
	return hooks[0].(map[string]any)
}
