package e2e

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// TestRecorderCountsARelistWhole replays what the API server's restart did
// to the recorder in the run where the budget seemed exceeded: before the
// outage hello-0 was Reloading the new revision; the relist after it holds
// hello-0 Ready and hello-1 told the revision (the controller told hello-1
// once hello-0 was Ready), handed over in the order hello-1, hello-0. Only
// one pod was ever reloading at once.
func TestRecorderCountsARelistWhole(t *testing.T) {
	const v1, v2 = "v1", "v2"
	r := &podRecorder{pods: map[string]*podView{}, synced: make(chan struct{})}
	before := []any{agentPod(t, "hello-0", v2, v2, v1alpha1.AgentReloading), agentPod(t, "hello-1", v1, v1, v1alpha1.AgentReady)}
	if err := r.Replace(before, "10"); err != nil {
		t.Fatal(err)
	}
	after := []any{agentPod(t, "hello-1", v2, v1, v1alpha1.AgentReady), agentPod(t, "hello-0", v2, v2, v1alpha1.AgentReady)}
	if err := r.Replace(after, "20"); err != nil {
		t.Fatal(err)
	}
	if n, when := r.max(); n != 1 {
		t.Errorf("%d pods reloading at once, want 1:\n%s", n, when)
	}
	if v := r.view("hello-1"); v.desired != v2 || len(v.asked) != 2 {
		t.Errorf("hello-1: desired %q asked %v, want %q after %q", v.desired, v.asked, v2, v1)
	}

	// Watch events, one at a time, are counted after each: a second pod
	// told while the first reloads is seen.
	if err := r.Update(agentPod(t, "hello-0", v1, v2, v1alpha1.AgentReady)); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.max(); n != 2 {
		t.Errorf("%d pods reloading at once after hello-0 was told %s too, want 2", n, v1)
	}
}

// agentPod is a pod told desired whose agent reports state at revision.
func agentPod(t *testing.T, name, desired, revision string, state v1alpha1.AgentState) *corev1.Pod {
	t.Helper()
	report, err := json.Marshal(v1alpha1.AgentStatus{Revision: revision, Running: revision, State: state, Ready: 2, Total: 2})
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "e2e", Annotations: map[string]string{
		v1alpha1.DesiredRevisionAnnotation: desired,
		v1alpha1.StatusAnnotation:          string(report),
	}}}
}
