package plugin_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/plugin"
	"github.com/softreload/softreload/internal/testing/controlplane"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/suite"
)

// The control plane the suite shares, and a kubeconfig of an administrator
// for it: the plugin reads it through --kubeconfig exactly as it reads a
// user's. Both are unset with go test -short, which runs only the specs
// that need neither.
var (
	env        *envtest.Env
	kubeconfig string
)

func TestPlugin(t *testing.T) { suite.Run(t, "internal/plugin") }

var _ = BeforeSuite(func() {
	env = controlplane.Start(envtest.Options{})
	if env == nil {
		return
	}
	kubeconfig = adminKubeconfig(env.Environment())
})

var _ = AfterSuite(func() { controlplane.Stop(env) })

// adminKubeconfig adds a user of group system:masters to a control plane
// and writes a kubeconfig for it, in a directory removed after the suite.
func adminKubeconfig(e *crenvtest.Environment) string {
	admin, err := e.ControlPlane.AddUser(crenvtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred(), "adding an administrator to the control plane")
	return writeKubeconfig(admin)
}

// writeKubeconfig writes a user's kubeconfig into a temporary directory
// that goes when the node that asked for it ends.
func writeKubeconfig(user *crenvtest.AuthenticatedUser) string {
	data, err := user.KubeConfig()
	Expect(err).NotTo(HaveOccurred(), "making a kubeconfig")
	path := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
	Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	return path
}

// result is what one run of the plugin printed and returned.
type result struct {
	out, errOut string
	err         error
}

// kubectlSoftreload runs the plugin's command tree with args, as
// `kubectl softreload ARGS --kubeconfig KUBECONFIG` would.
func kubectlSoftreload(now func() time.Time, args ...string) result {
	return kubectlSoftreloadWith(kubeconfig, now, args...)
}

// kubectlSoftreloadWith runs the plugin with another user's kubeconfig.
func kubectlSoftreloadWith(kubeconfig string, now func() time.Time, args ...string) result {
	var out, errOut bytes.Buffer
	cmd := plugin.NewCommand(plugin.Options{
		Streams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
		Now:     now,
	})
	// The flag goes after the (sub)command's name, where completion, which
	// completes the last argument, leaves it alone.
	if len(args) > 0 {
		args = append([]string{args[0], "--kubeconfig", kubeconfig}, args[1:]...)
	}
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return result{out: out.String(), errOut: errOut.String(), err: err}
}

// run is kubectlSoftreload on the wall clock, failing the spec on an error.
func run(args ...string) string {
	GinkgoHelper()
	r := kubectlSoftreload(nil, args...)
	Expect(r.err).NotTo(HaveOccurred(), "kubectl softreload %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.out, r.errOut)
	return r.out
}

// runErr runs a command that must fail and returns its error message.
func runErr(args ...string) string {
	GinkgoHelper()
	r := kubectlSoftreload(nil, args...)
	Expect(r.err).To(HaveOccurred(), "kubectl softreload %s succeeded, want an error; stdout:\n%s", strings.Join(args, " "), r.out)
	return r.err.Error()
}

// containAll matches a string that contains every one of want.
func containAll(want ...string) types.GomegaMatcher {
	matchers := make([]types.GomegaMatcher, 0, len(want))
	for _, w := range want {
		matchers = append(matchers, ContainSubstring(w))
	}
	return SatisfyAll(matchers...)
}

// namespace creates a namespace named name.
func namespace(name string) {
	GinkgoHelper()
	Expect(env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
}

// poolBuilder builds a WorkerPool fixture.
type poolBuilder struct{ wp *workersv1alpha1.WorkerPool }

func newPool(ns, name string) *poolBuilder {
	return &poolBuilder{wp: &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: workersv1alpha1.WorkerPoolSpec{
			Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Code:     workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: name + "-code"}},
			Groups:   []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"php", "server.php"}, Count: 4}},
		},
	}}
}

func (b *poolBuilder) paused() *poolBuilder { b.wp.Spec.Paused = true; return b }

func (b *poolBuilder) annotation(key, value string) *poolBuilder {
	if b.wp.Annotations == nil {
		b.wp.Annotations = map[string]string{}
	}
	b.wp.Annotations[key] = value
	return b
}

func (b *poolBuilder) revisions(current, update string) *poolBuilder {
	b.wp.Status.CurrentRevision, b.wp.Status.UpdateRevision = current, update
	return b
}

// record adds a history record, newest first; completed is how long ago
// the revision completed, or 0 if it did not.
func (b *poolBuilder) record(rev, cause, result string, created, completed time.Duration) *poolBuilder {
	rec := workersv1alpha1.RevisionRecord{
		Revision:  rev,
		Cause:     cause,
		Source:    "ConfigMap " + b.wp.Name + "-code (resourceVersion " + rev + ")",
		CreatedAt: metav1.NewTime(time.Now().Add(-created).Truncate(time.Second)),
		Result:    result,
	}
	if completed > 0 {
		at := metav1.NewTime(time.Now().Add(-completed).Truncate(time.Second))
		rec.CompletedAt = &at
	}
	b.wp.Status.History = append(b.wp.Status.History, rec)
	return b
}

func (b *poolBuilder) condition(typ string, status metav1.ConditionStatus, reason, message string) *poolBuilder {
	b.wp.Status.Conditions = append(b.wp.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message,
		LastTransitionTime: metav1.NewTime(time.Now().Add(-3 * time.Minute).Truncate(time.Second)),
	})
	return b
}

func (b *poolBuilder) counts(pods, updated, ready, reloading, failed int32) *poolBuilder {
	st := &b.wp.Status
	st.Pods, st.UpdatedPods, st.ReadyPods, st.ReloadingPods, st.FailedPods = pods, updated, ready, reloading, failed
	return b
}

// create writes the pool and then its status, as the controller would.
func (b *poolBuilder) create() {
	GinkgoHelper()
	ctx := context.Background()
	status := b.wp.Status
	Expect(env.Client.Create(ctx, b.wp)).To(Succeed())
	status.ObservedGeneration = b.wp.Generation
	b.wp.Status = status
	Expect(env.Client.Status().Update(ctx, b.wp)).To(Succeed())
}

// pod creates a pod of pool app (labelled app=APP, which the pool's
// selector matches, and softreload.dev/pool=APP) with the given
// annotations.
func pod(ns, name, app string, annotations map[string]string) {
	GinkgoHelper()
	podLabelled(ns, name, map[string]string{"app": app, workersv1alpha1.PoolLabel: app}, annotations)
}

// podLabelled creates a pod with the given labels and annotations.
func podLabelled(ns, name string, labels, annotations map[string]string) {
	GinkgoHelper()
	Expect(env.Client.Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:v1"}}},
	})).To(Succeed())
}

// agentStatus is a StatusAnnotation value.
func agentStatus(rev string, state workersv1alpha1.AgentState, running string, ready, total int32, message string) string {
	return fmt.Sprintf(`{"revision":%q,"state":%q,"running":%q,"ready":%d,"total":%d,"message":%q}`, rev, state, running, ready, total, message)
}

// snapshot creates the revision snapshot ConfigMap the controller keeps.
func snapshot(ns, pool, rev string) {
	GinkgoHelper()
	Expect(env.Client.Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pool + "-" + rev, Labels: map[string]string{
			workersv1alpha1.PoolNameLabel: pool,
			workersv1alpha1.RevisionLabel: rev,
		}},
		Data: map[string]string{"index.php": "<?php echo '" + rev + "';"},
	})).To(Succeed())
}

// getPool reads a pool back from the API server.
func getPool(ns, name string) *workersv1alpha1.WorkerPool {
	GinkgoHelper()
	var wp workersv1alpha1.WorkerPool
	Expect(env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &wp)).To(Succeed())
	return &wp
}

// tableRows returns the cells of the table whose header starts with
// firstColumn, cut at the columns of the header as kubectl-style aligned
// tables are; a row ends at the first blank line.
func tableRows(out, firstColumn string) [][]string {
	GinkgoHelper()
	var starts []int
	var rows [][]string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case starts == nil && strings.HasPrefix(strings.TrimSpace(line), firstColumn+" "):
			for i := range line {
				if line[i] != ' ' && (i == 0 || line[i-1] == ' ') {
					starts = append(starts, i)
				}
			}
		case starts != nil && strings.TrimSpace(line) == "":
			return rows
		case starts != nil:
			row := make([]string, len(starts))
			for i, start := range starts {
				end := len(line)
				if i+1 < len(starts) {
					end = min(starts[i+1], len(line))
				}
				if start < end {
					row[i] = strings.TrimSpace(line[start:end])
				}
			}
			rows = append(rows, row)
		}
	}
	Expect(starts).NotTo(BeEmpty(), "no table with a %s column in:\n%s", firstColumn, out)
	return rows
}
