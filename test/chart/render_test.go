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

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
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

// kubectlOnce finds kubectl, which renders kustomizations with no control
// plane: the control plane's own when KUBEBUILDER_ASSETS names one that
// holds it (make test), otherwise the pinned one of hack/tools.sh, so that
// go test -short renders without a control plane's assets.
var kubectlOnce = sync.OnceValues(func() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		bin := filepath.Join(dir, "kubectl")
		if info, err := os.Stat(bin); err == nil && info.Mode()&0o111 != 0 {
			return bin, nil
		}
	}
	return toolPath("kubectl")
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
func helm(args ...string) (string, error) {
	bin, err := helmOnce()
	Expect(err).NotTo(HaveOccurred())
	home := GinkgoT().TempDir()
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
func template(values string) (objects, error) {
	return render(values, "--include-crds", "--no-hooks")
}

// render runs helm template with the values and extra flags.
// The same values render the same objects: each rendering is kept, and
// every caller gets a copy of its own.
func render(values string, flags ...string) (objects, error) {
	key := strings.Join(append([]string{values}, flags...), "\x00")
	renderedMu.Lock()
	r, ok := rendered[key]
	renderedMu.Unlock()
	if !ok {
		args := append([]string{"template", "softreload", chartDir, "--namespace", namespace}, flags...)
		if values != "" {
			args = append(args, "--values", valuesFile(values))
		}
		out, err := helm(args...)
		if err == nil {
			r.objs = decode(out)
		}
		r.err = err
		renderedMu.Lock()
		rendered[key] = r
		renderedMu.Unlock()
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make(objects, len(r.objs))
	for i, o := range r.objs {
		out[i] = o.DeepCopy()
	}
	return out, nil
}

// rendered keeps each rendering of the chart, by values and flags.
var (
	renderedMu sync.Mutex
	rendered   = map[string]struct {
		objs objects
		err  error
	}{}
)

// valuesFile writes values into a file for --values. Not in
// GinkgoT().TempDir(): helm splits --values at commas, which spec names
// may hold.
func valuesFile(values string) string {
	dir, err := os.MkdirTemp("", "softreload-chart-test-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	f := filepath.Join(dir, "values.yaml")
	Expect(os.WriteFile(f, []byte(values), 0o644)).To(Succeed())
	return f
}

func mustTemplate(values string) objects {
	GinkgoHelper()
	objs, err := template(values)
	Expect(err).NotTo(HaveOccurred())
	return objs
}

// kustomize renders a kustomization directory with the kubectl of the test
// control plane.
func kustomize(dir string) objects {
	GinkgoHelper()
	kubectl, err := kubectlOnce()
	Expect(err).NotTo(HaveOccurred())
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	Expect(cmd.Run()).To(Succeed(), "kubectl kustomize %s: %s", dir, &stderr)
	return decode(stdout.String())
}

// overlay writes a kustomization that builds on the repository's config/
// directories (resources and components, relative to config/) and returns
// its directory. kustomize refuses absolute paths, so they are relative.
func overlay(resources, components []string) string {
	dir := GinkgoT().TempDir()
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(root, "config", p))
		Expect(err).NotTo(HaveOccurred())
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
	Expect(os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644)).To(Succeed())
	return dir
}

// objects are rendered Kubernetes objects, in the order they came.
type objects []*unstructured.Unstructured

func decode(manifests string) objects {
	GinkgoHelper()
	var out objects
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		Expect(err).NotTo(HaveOccurred())
		js, err := yaml.YAMLToJSON(doc)
		Expect(err).NotTo(HaveOccurred(), "in\n%s", doc)
		if string(js) == "null" {
			continue // a document of comments only
		}
		// Unstructured keeps integers as int64, as the API server does.
		o := &unstructured.Unstructured{}
		Expect(o.UnmarshalJSON(js)).To(Succeed(), "in\n%s", doc)
		out = append(out, o)
	}
}

// readObjects decodes the YAML file at path (relative to the root).
func readObjects(path string) objects {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(root, path))
	Expect(err).NotTo(HaveOccurred())
	return decode(string(data))
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

// get returns the object of that kind and name, failing the spec if there
// is not exactly one.
func (objs objects) get(kind, name string) *unstructured.Unstructured {
	GinkgoHelper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			found = append(found, o)
		}
	}
	Expect(found).To(HaveLen(1), "objects %s/%s rendered; rendered: %v", kind, name, objs.ids())
	return found[0]
}

func (objs objects) has(kind, name string) bool {
	return slices.Contains(objs.ids(), kind+"/"+name)
}

// field reads a nested field, failing the spec if it is missing.
func field(o *unstructured.Unstructured, path ...string) any {
	GinkgoHelper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	Expect(err).NotTo(HaveOccurred(), "%s/%s: %s", o.GetKind(), o.GetName(), strings.Join(path, "."))
	Expect(ok).To(BeTrue(), "%s/%s has no %s", o.GetKind(), o.GetName(), strings.Join(path, "."))
	return v
}

// container returns the manager container of the Deployment.
func managerContainer(objs objects) map[string]any {
	GinkgoHelper()
	d := objs.get("Deployment", "softreload-manager")
	cs := field(d, "spec", "template", "spec", "containers").([]any)
	Expect(cs).To(HaveLen(1), "the Deployment's containers")
	return cs[0].(map[string]any)
}

// args are the manager container's arguments.
func args(objs objects) []string {
	GinkgoHelper()
	var out []string
	for _, a := range managerContainer(objs)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

// webhook returns the only webhook of softreload-injector.
func webhook(objs objects) map[string]any {
	GinkgoHelper()
	cfg := objs.get("MutatingWebhookConfiguration", "softreload-injector")
	hooks := field(cfg, "webhooks").([]any)
	Expect(hooks).To(HaveLen(1), "softreload-injector's webhooks")
	return hooks[0].(map[string]any)
}
