//go:build e2e

package ownership

import (
	"context"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/envtest"
	"github.com/softreload/softreload/internal/testing/podrecord"
	"github.com/softreload/softreload/internal/testing/suite"
)

const (
	// rolloutTimeout bounds a rollout over the three pods, on a busy
	// 2-core machine.
	rolloutTimeout = 2 * time.Minute
	intruder       = "intruder"
	stray          = "hello-stray"
)

var _ = Describe("One pod, one pool", Ordered, Label(suite.ControlPlane), func() {
	var (
		ctx     context.Context
		cluster *local.Cluster
		c       client.Client
		ns      string
		pods    []string
		rec     *podrecord.Recorder
		gen     *load.Generator
		app     map[string]string
		// failed says a spec failed: the processes' logs are printed.
		failed bool
	)

	// pool reads a WorkerPool.
	pool := func(name string) func(Gomega) *v1alpha1.WorkerPool {
		return func(g Gomega) *v1alpha1.WorkerPool {
			p := &v1alpha1.WorkerPool{}
			g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p)).To(Succeed())
			return p
		}
	}

	// rolledOut waits until every pod of the walkthrough's pool runs rev
	// (its update revision when rev is ""), Ready, and the pool says so for
	// exactly its three pods; it returns the revision.
	rolledOut := func(rev string) string {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			p := pool(local.ExamplePool)(g)
			st := p.Status
			g.Expect(st.UpdateRevision).NotTo(BeEmpty())
			if rev != "" {
				g.Expect(st.UpdateRevision).To(Equal(rev))
			}
			g.Expect(st.CurrentRevision).To(Equal(st.UpdateRevision), "the pool's status: %+v", st)
			g.Expect(st.Pods).To(BeEquivalentTo(3), "the pool's status: %+v", st)
			g.Expect(st.UpdatedPods).To(BeEquivalentTo(3), "the pool's status: %+v", st)
			g.Expect(st.ReadyPods).To(BeEquivalentTo(3), "the pool's status: %+v", st)
			for _, name := range pods {
				got := rec.Pod(name)
				g.Expect(got.Desired).To(Equal(st.UpdateRevision), "pods:\n%s", rec)
				g.Expect(got.Report.State).To(Equal(v1alpha1.AgentReady), "pods:\n%s", rec)
				g.Expect(got.Report.Revision).To(Equal(st.UpdateRevision), "pods:\n%s", rec)
			}
			rev = st.UpdateRevision
		}).WithTimeout(rolloutTimeout).WithPolling(200 * time.Millisecond).Should(Succeed())
		return rev
	}

	// snapshots are the walkthrough pool's revisions that have a snapshot.
	snapshots := func() map[string]bool {
		GinkgoHelper()
		list := &corev1.ConfigMapList{}
		Expect(c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{v1alpha1.PoolNameLabel: local.ExamplePool})).To(Succeed())
		out := map[string]bool{}
		for _, cm := range list.Items {
			out[cm.Labels[v1alpha1.RevisionLabel]] = true
		}
		return out
	}

	// changeCode writes a new greeting into the code ConfigMap and returns
	// the revision the pool makes of it (its new snapshot).
	changeCode := func(greeting string) string {
		GinkgoHelper()
		rec.ResetMax()
		known := snapshots()
		app["greeting.txt"] = greeting + "\n"
		cm := &corev1.ConfigMap{}
		Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: local.ExampleCode}, cm)).To(Succeed())
		cm.Data = map[string]string{}
		for k, v := range app {
			cm.Data[k] = v
		}
		Expect(c.Update(ctx, cm)).To(Succeed())
		var rev string
		Eventually(func(g Gomega) {
			for r := range snapshots() {
				if !known[r] {
					rev = r
				}
			}
			g.Expect(rev).NotTo(BeEmpty(), "no new snapshot yet")
		}).WithTimeout(rolloutTimeout).Should(Succeed())
		return rev
	}

	// noFailedRequests checks the load so far: every request answered.
	noFailedRequests := func() {
		GinkgoHelper()
		ok, failed, errs := load.Total(gen.Snapshot())
		Expect(failed).To(BeZero(), "%d of %d requests failed: %v", failed, ok+failed, errs)
		Expect(ok).To(BeNumerically(">", 0), "no request was answered")
		GinkgoWriter.Printf("load so far: %d requests answered, %d failed\n", ok, failed)
	}

	// withinBudget checks that no more than maxUnavailable (1) pods
	// reloaded at once since the last code change.
	withinBudget := func() {
		GinkgoHelper()
		n, when := rec.Max()
		Expect(n).To(BeNumerically("<=", 1), "%d pods were reloading at once, maxUnavailable allows 1:\n%s", n, when)
	}

	// condition returns a condition of the pool, or an empty one.
	condition := func(p *v1alpha1.WorkerPool, typ string) metav1.Condition {
		if cond := meta.FindStatusCondition(p.Status.Conditions, typ); cond != nil {
			return *cond
		}
		return metav1.Condition{}
	}

	// warnings returns the notes of the Warning events of reason about
	// the named pool.
	warnings := func(g Gomega, poolName, reason string) []string {
		list := &eventsv1.EventList{}
		g.Expect(c.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == reason && e.Regarding.Kind == "WorkerPool" && e.Regarding.Name == poolName {
				out = append(out, e.Note)
			}
		}
		return out
	}

	BeforeAll(func() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(context.Background())
		DeferCleanup(cancel)
		root, err := envtest.RepoRoot()
		Expect(err).NotTo(HaveOccurred())
		// The walkthrough's gateway imports websockets: its pods' python3
		// must have it, which the PATH the agents inherit may not say.
		Expect(local.UsePythonWithWebsockets()).To(Succeed())
		dir := GinkgoT().TempDir()
		cluster, err = local.Start(ctx, local.Options{Dir: dir, Namespace: "ownership"})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			cancel() // the recorder's watch first: the API server stops once its clients are gone
			Expect(cluster.Stop()).To(Succeed())
			if failed || CurrentSpecReport().Failed() {
				GinkgoWriter.Print(local.LogTails(dir, 60))
			}
		})
		c, ns = cluster.Client(), cluster.Namespace()

		app, err = local.ExampleApp(root)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: local.ExampleCode, Namespace: ns}, Data: app})).To(Succeed())
		hello, err := local.ExampleWorkerPool(root)
		Expect(err).NotTo(HaveOccurred())
		hello.Namespace = ns
		Expect(c.Create(ctx, hello)).To(Succeed())
		Expect(hello.Spec.Strategy.MaxUnavailable.IntValue()).To(Equal(1), "the walkthrough's pool moves one pod at a time")

		rec, err = podrecord.Start(ctx, kubernetes.NewForConfigOrDie(cluster.Config()), ns, "")
		Expect(err).NotTo(HaveOccurred())
		Expect(cluster.StartManager()).To(Succeed())

		offset, err := local.FreePortOffset(3, local.ExampleWebPort, local.ExampleGWPort)
		Expect(err).NotTo(HaveOccurred())
		labels := map[string]string{"app": "hello", v1alpha1.PoolLabel: local.ExamplePool}
		var targets []string
		for i := range 3 {
			p, err := cluster.AddPod(ctx, "hello-"+strconv.Itoa(i), offset+local.PortStep*i, labels)
			Expect(err).NotTo(HaveOccurred())
			pods = append(pods, p.Name)
			targets = append(targets, "http://"+p.Addr(local.ExampleWebPort)+"/")
		}
		rolledOut("")
		gen = load.Start(targets, load.Options{Workers: 2, Pause: 20 * time.Millisecond})
		DeferCleanup(func() { gen.Stop() })
		// Some load answered before the first change.
		Eventually(func(g Gomega) {
			ok, _, _ := load.Total(gen.Snapshot())
			g.Expect(ok).To(BeNumerically(">=", 10))
		}).WithTimeout(time.Minute).Should(Succeed())
	})

	AfterEach(func() {
		noFailedRequests()
		failed = failed || CurrentSpecReport().Failed()
	})

	It("reports a second pool with an overlapping selector, which touches no pod of the first", func() {
		Expect(c.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: intruder + "-code", Namespace: ns},
			Data:       map[string]string{"worker.py": "import sys\nsys.exit('the intruder must never run')\n"},
		})).To(Succeed())
		second := &v1alpha1.WorkerPool{
			ObjectMeta: metav1.ObjectMeta{Name: intruder, Namespace: ns},
			Spec: v1alpha1.WorkerPoolSpec{
				Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "hello"}},
				Code:     v1alpha1.CodeSource{ConfigMapRef: &v1alpha1.ConfigMapCodeSource{Name: intruder + "-code"}},
				Groups:   []v1alpha1.WorkerGroup{{Name: "web", Command: []string{"python3", "worker.py"}}},
			},
		}
		Expect(c.Create(ctx, second)).To(Succeed())

		// The status is written by the reconcile that would have sent the
		// pods a revision: once it shows, any such write was made.
		var intruderRev string
		Eventually(func(g Gomega) {
			p := pool(intruder)(g)
			overlap := condition(p, v1alpha1.ConditionSelectorOverlap)
			g.Expect(overlap.Status).To(Equal(metav1.ConditionTrue), "the intruder's status: %+v", p.Status)
			g.Expect(overlap.Reason).To(Equal(v1alpha1.ReasonPodsOfOtherPools))
			g.Expect(overlap.Message).To(ContainSubstring("pods hello-0, hello-1, hello-2 of WorkerPool hello (softreload.dev/pool=hello)"))
			g.Expect(p.Status.Pods).To(BeZero())
			g.Expect(condition(p, v1alpha1.ConditionAvailable).Reason).To(Equal(v1alpha1.ReasonNoPods))
			g.Expect(p.Status.UpdateRevision).NotTo(BeEmpty())
			intruderRev = p.Status.UpdateRevision
		}).WithTimeout(rolloutTimeout).Should(Succeed())
		Eventually(func(g Gomega) []string { return warnings(g, intruder, "SelectorOverlap") }).
			WithTimeout(time.Minute).Should(ContainElement(ContainSubstring("hello-0")))

		rev := changeCode("Hello, still mine")
		rolledOut(rev)
		withinBudget()
		for _, name := range pods {
			Expect(rec.Pod(name).Asked).NotTo(ContainElement(intruderRev), "pod %s was sent the intruder's revision", name)
			Expect(rec.TimesAsked(name, rev)).To(Equal(1), "pod %s was sent revision %s", name, rev)
		}
		hello := pool(local.ExamplePool)(Default)
		Expect(condition(hello, v1alpha1.ConditionSelectorOverlap).Reason).To(Equal(v1alpha1.ReasonNoOverlap),
			"the intruder's pods, none, are not the walkthrough pool's concern")
	})

	It("gives no slot of the budget to a selected pod without the pool label", func() {
		// A pod the selector matches, created without the webhook's label
		// and so without an agent: it would never report.
		Expect(c.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: stray, Namespace: ns, Labels: map[string]string{"app": "hello"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "local/app"}}},
		})).To(Succeed())
		Eventually(func(g Gomega) {
			overlap := condition(pool(local.ExamplePool)(g), v1alpha1.ConditionSelectorOverlap)
			g.Expect(overlap.Reason).To(Equal(v1alpha1.ReasonPodsWithoutPoolLabel))
			g.Expect(overlap.Message).To(ContainSubstring("pod " + stray + " without the softreload.dev/pool label"))
		}).WithTimeout(time.Minute).Should(Succeed())
		Eventually(func(g Gomega) []string { return warnings(g, local.ExamplePool, "SelectorOverlap") }).
			WithTimeout(time.Minute).Should(ContainElement(ContainSubstring(stray)))

		// With maxUnavailable 1, a pod that holds the slot and never
		// reports would stall this rollout.
		rev := changeCode("Hello beside a stray pod")
		rolledOut(rev)
		withinBudget()
		Expect(rec.Pod(stray).Asked).To(BeEmpty(), "the stray pod was sent revisions")
		got := &corev1.Pod{}
		Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: stray}, got)).To(Succeed())
		Expect(got.Annotations).NotTo(HaveKey(v1alpha1.DesiredRevisionAnnotation))
	})

	It("leaves the first pool as it was when the second is deleted", func() {
		before := pool(local.ExamplePool)(Default)
		asked := map[string][]string{}
		for _, name := range pods {
			asked[name] = rec.Pod(name).Asked
		}
		Expect(c.Delete(ctx, &v1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Name: intruder, Namespace: ns}})).To(Succeed())
		Eventually(func() error {
			return c.Get(ctx, client.ObjectKey{Namespace: ns, Name: intruder}, &v1alpha1.WorkerPool{})
		}).WithTimeout(time.Minute).Should(Satisfy(apierrors.IsNotFound))

		// Nothing is there to wait for: what must not happen is any write to
		// the pool's pods or a new revision, for a while after.
		Consistently(func(g Gomega) {
			p := pool(local.ExamplePool)(g)
			g.Expect(p.Status.CurrentRevision).To(Equal(before.Status.CurrentRevision))
			g.Expect(p.Status.UpdateRevision).To(Equal(before.Status.UpdateRevision))
			g.Expect(p.Status.History).To(Equal(before.Status.History))
			for _, name := range pods {
				g.Expect(rec.Pod(name).Asked).To(Equal(asked[name]), "pod %s", name)
				g.Expect(rec.Pod(name).Ready).To(BeTrue(), "pod %s:\n%s", name, rec)
			}
		}).WithTimeout(5 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		// And it rolls on as before.
		rev := changeCode("Hello, on my own again")
		rolledOut(rev)
		withinBudget()
		for _, name := range pods {
			Expect(rec.Pod(name).Asked).To(Equal(append(asked[name], rev)), "pod %s", name)
		}

		Expect(c.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: stray, Namespace: ns}})).To(Succeed())
		Eventually(func(g Gomega) metav1.Condition {
			return condition(pool(local.ExamplePool)(g), v1alpha1.ConditionSelectorOverlap)
		}).WithTimeout(time.Minute).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", v1alpha1.ReasonNoOverlap)))
	})
})
