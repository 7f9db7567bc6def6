package podrecord_test

import (
	"encoding/json"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/podrecord"
)

func TestPodRecord(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "podrecord")
}

// pod is a pod told desired whose agent reports state for rev.
func pod(name, desired string, state v1alpha1.AgentState, rev string) *corev1.Pod {
	raw, err := json.Marshal(v1alpha1.AgentStatus{Revision: rev, State: state, Running: rev, Ready: 1, Total: 1})
	Expect(err).NotTo(HaveOccurred())
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid"), Annotations: map[string]string{
		v1alpha1.DesiredRevisionAnnotation: desired,
		v1alpha1.StatusAnnotation:          string(raw),
	}}}
}

var _ = Describe("Recorder", func() {
	var r *podrecord.Recorder
	maxAtOnce := func() int { n, _ := r.Max(); return n }
	BeforeEach(func() {
		r = podrecord.New()
		Expect(r.Replace([]any{
			pod("a", "r2", v1alpha1.AgentReloading, "r2"),
			pod("b", "r1", v1alpha1.AgentReady, "r1"),
		}, "1")).To(Succeed())
	})

	It("counts a relist as one state, never a mix of old and new", func() {
		// a finished, then b was told r2: one pod reloading at every
		// moment. Applied one pod at a time in the order b, a, there
		// would have been two.
		Expect(r.Replace([]any{
			pod("b", "r2", v1alpha1.AgentReloading, "r2"),
			pod("a", "r2", v1alpha1.AgentReady, "r2"),
		}, "2")).To(Succeed())
		Expect(maxAtOnce()).To(Equal(1))
	})

	It("counts watch events one at a time", func() {
		Expect(r.Update(pod("b", "r2", v1alpha1.AgentReady, "r1"))).To(Succeed())
		n, when := r.Max()
		Expect(n).To(Equal(2))
		Expect(when).To(ContainSubstring(`b: desired "r2"`))
		r.ResetMax()
		Expect(maxAtOnce()).To(Equal(0))
	})

	It("keeps what it knew of a deleted pod, which no longer counts", func() {
		Expect(r.Delete(pod("a", "r2", v1alpha1.AgentReloading, "r2"))).To(Succeed())
		Expect(r.Update(pod("b", "r2", v1alpha1.AgentReloading, "r2"))).To(Succeed())
		Expect(maxAtOnce()).To(Equal(1))
		Expect(r.Pod("a").Gone).To(BeTrue())
		Expect(r.String()).NotTo(ContainSubstring("a:"))
	})

	It("records what each pod was told, reported, and when it became Ready", func() {
		Expect(r.Update(pod("b", "r2", v1alpha1.AgentReloading, "r2"))).To(Succeed())
		Expect(r.Update(pod("b", "r2", v1alpha1.AgentReady, "r2"))).To(Succeed())
		Expect(r.Update(pod("b", "r1", v1alpha1.AgentReady, "r1"))).To(Succeed())
		b := r.Pod("b")
		Expect(b.Asked).To(Equal([]string{"r1", "r2", "r1"}))
		Expect(r.TimesAsked("b", "r1")).To(Equal(2))
		Expect(b.Reports).To(HaveLen(4))
		Expect(b.ReadyAt).To(HaveKey("r2"))
		Expect(b.Ready).To(BeTrue())
	})
})
