//go:build realnode

package realnode

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/internal/testing/nodeimage"
)

var _ = Describe("softreload on a real node", Label("realnode"), Ordered, func() {
	var s *suite

	BeforeAll(func(ctx SpecContext) {
		s = start(ctx)
	}, NodeTimeout(rolloutTimeout*4))

	AfterEach(func(ctx SpecContext) {
		s.ctx = ctx
		if !CurrentSpecReport().Failed() {
			s.unchanged()
		}
	})

	It("rolls a code ConfigMap change over every pod within maxUnavailable, and the answers switch", func(ctx SpecContext) {
		s.ctx = ctx
		before := s.webPIDs()
		rev, at := s.changeCode(map[string]string{"greeting.txt": "Hello again\n"})
		s.waitRolledOut("the rollout of "+rev, rev)
		s.measured("ConfigMap", "greeting.txt changed", rev, at)
		s.withinBudget()
		after := s.webPIDs()
		for _, p := range s.pods {
			for _, pid := range after[p.name] {
				Expect(before[p.name]).NotTo(ContainElement(pid), "pod %s: web worker %d served before the reload and still does", p.name, pid)
			}
			s.answers(p, rev, "Hello again")
			Expect(s.rec.TimesAsked(p.name, rev)).To(Equal(1), "pod %s was sent %s", p.name, rev)
		}
	})

	It("tries broken code on one pod, which rolls back; the pool turns Degraded and no other pod is touched", func(ctx SpecContext) {
		s.ctx = ctx
		good := s.pool().Status.CurrentRevision
		before := s.webPIDs()
		s.brokenCode(good, map[string]string{"worker.py": nodeimage.BrokenWorker}, "broken worker.py, rolled back")
		after := s.webPIDs()
		for _, p := range s.pods {
			Expect(after[p.name]).To(Equal(before[p.name]), "pod %s: web workers (the old ones keep serving)", p.name)
			s.answers(p, good, "Hello again")
		}
		s.withinBudget()
	})

	It("follows kubectl softreload rollback, reload, pause and resume", func(ctx SpecContext) {
		s.ctx = ctx
		By("rollback: every pod goes back to the revision before")
		original := s.completedBefore(s.pool().Status.CurrentRevision)
		before := s.webPIDs()
		s.rec.ResetMax()
		at := time.Now()
		s.run("kubectl", "softreload", "rollback", pool)
		s.waitRolledOut("the rollback to "+original, original)
		s.measured("ConfigMap", "kubectl softreload rollback", original, at)
		s.withinBudget()
		s.replacedSince(before)
		for _, p := range s.pods {
			s.answers(p, original, "Hello from softreload")
			Expect(s.rec.TimesAsked(p.name, original)).To(Equal(2), "pod %s was sent %s (at the start and by the rollback)", p.name, original)
		}

		By("a repaired code change ends the rollback")
		before = s.webPIDs()
		rev, at := s.changeCode(map[string]string{"worker.py": s.example("worker.py"), "greeting.txt": "Hello, repaired\n"})
		s.waitRolledOut("the rollout of "+rev, rev)
		s.measured("ConfigMap", "worker.py and greeting.txt changed", rev, at)
		s.replacedSince(before)

		By("reload: every pod's web workers are replaced with unchanged code")
		before = s.webPIDs()
		rev, at = s.newRevision(func() { s.run("kubectl", "softreload", "reload", pool) })
		s.waitRolledOut("the reload "+rev, rev)
		s.measured("ConfigMap", "kubectl softreload reload", rev, at)
		s.withinBudget()
		s.replacedSince(before)
		for _, p := range s.pods {
			s.answers(p, rev, "Hello, repaired")
		}

		By("pause: a code change waits; resume: it rolls out")
		current := rev
		s.run("kubectl", "softreload", "pause", pool)
		before = s.webPIDs()
		rev, _ = s.changeCode(map[string]string{"greeting.txt": "Hello after the pause\n"})
		Eventually(func() string { return s.pool().Status.UpdateRevision }).WithTimeout(time.Minute).WithPolling(poll).Should(Equal(rev))
		for _, p := range s.pods {
			Expect(s.rec.TimesAsked(p.name, rev)).To(BeZero(), "pod %s was sent %s while the pool is paused", p.name, rev)
			s.answers(p, current, "Hello, repaired")
		}
		Expect(s.webPIDs()).To(Equal(before), "web workers while the pool is paused")
		at = time.Now()
		s.run("kubectl", "softreload", "resume", pool)
		s.waitRolledOut("the rollout of "+rev+" after resume", rev)
		s.measured("ConfigMap", "kubectl softreload resume", rev, at)
		s.withinBudget()
		s.replacedSince(before)
		for _, p := range s.pods {
			s.answers(p, rev, "Hello after the pause")
		}
	})

	It("completes a rollout when the manager pod is deleted mid-rollout, and no pod reloads twice", func(ctx SpecContext) {
		s.ctx = ctx
		before := s.webPIDs()
		rev, at := s.changeCode(map[string]string{"greeting.txt": "Hello, third time\n"})
		Eventually(func() bool {
			for _, p := range s.pods {
				if s.rec.Pod(p.name).Desired == rev {
					return true
				}
			}
			return false
		}).WithTimeout(rolloutTimeout).WithPolling(50*time.Millisecond).Should(BeTrue(), "the rollout begins")
		fmt.Fprintf(GinkgoWriter, "Deleting the manager with the pods at:\n%s", s.rec)
		s.run("kubectl", "-n", managerNS, "delete", "pod", "-l", "app.kubernetes.io/name=softreload", "--wait=false")
		s.waitRolledOut("the rollout of "+rev+" after the manager's deletion", rev)
		s.measured("ConfigMap", "greeting.txt changed, manager deleted", rev, at)
		s.withinBudget()
		s.replacedSince(before)
		for _, p := range s.pods {
			Expect(s.rec.TimesAsked(p.name, rev)).To(Equal(1), "pod %s was sent %s", p.name, rev)
			s.answers(p, rev, "Hello, third time")
		}
	})

	It("drains the workers of a deleted pod, whose agent exits 0 well within the grace period", func(ctx SpecContext) {
		s.ctx = ctx
		rev := s.pool().Status.CurrentRevision
		victim := s.anyPod()
		s.leave(victim)
		s.run("kubectl", "delete", "pod", victim.name, "--wait=false")
		var final *corev1.ContainerStateTerminated
		var last *corev1.Pod
		Eventually(func(g Gomega) {
			v := s.rec.Pod(victim.name)
			g.Expect(v.Last).NotTo(BeNil())
			last = v.Last
			for _, cs := range last.Status.ContainerStatuses {
				if cs.Name == appContainer {
					final = cs.State.Terminated
				}
			}
			g.Expect(final).NotTo(BeNil(), "the app container of %s has not terminated", victim.name)
		}).WithTimeout(time.Minute).WithPolling(poll).Should(Succeed())
		grace := time.Duration(*last.Spec.TerminationGracePeriodSeconds) * time.Second
		asked := last.DeletionTimestamp.Add(-grace)
		took := final.FinishedAt.Sub(asked)
		fmt.Printf("realnode: pod %s deleted: its agent exited %d (%s) %v after the deletion (grace period %v)\n", victim.name, final.ExitCode, final.Reason, took, grace)
		Expect(final.ExitCode).To(BeZero(), "the agent's exit code: %s %s", final.Reason, final.Message)
		// The grace period's half: the agent drains in well under a second;
		// a kill at the end of the grace period would exit 137.
		Expect(took).To(BeNumerically("<", grace/2), "from the deletion to the agent's exit")

		By("the Deployment's new pod joins at the current revision")
		Eventually(func() int { return len(s.currentPods()) }).WithTimeout(rolloutTimeout).WithPolling(poll).Should(Equal(len(s.pods) + 1))
		s.waitRolledOut("the new pod starts", rev)
		s.joinPods()
		for _, p := range s.pods {
			s.answers(p, rev, "Hello, third time")
		}
	})

	It(fmt.Sprintf("keeps %d WebSocket clients through the Service connected through %d reloads of the business group and a broken revision, each message answered once, by the new code within %v", serviceClients, businessReloads, seeNewCode), func(ctx SpecContext) {
		s.ctx = ctx
		s.gatewayThroughReloads()
	})

	It("rolls code images over every pod restarting only softreload-code, rolls a broken one back, and starts new pods at the good one", func(ctx SpecContext) {
		s.ctx = ctx
		v1, v2, broken := nodeimage.Codes[0], nodeimage.Codes[1], nodeimage.Codes[2]
		image := func(c nodeimage.Code) func() {
			return func() {
				s.run("kubectl", "patch", "workerpool", pool, "--type", "merge", "-p",
					fmt.Sprintf(`{"spec":{"code":{"configMapRef":null,"image":{"reference":%q,"path":%q}}}}`, c.Ref(), nodeimage.CodePath))
			}
		}

		By("switching the pool to a code image: pause, change the pool, restart the pods, resume (docs/controller.md)")
		s.run("kubectl", "softreload", "pause", pool)
		rev, _ := s.newRevision(image(v1))
		Eventually(func() string { return s.pool().Status.UpdateRevision }).WithTimeout(time.Minute).WithPolling(poll).Should(Equal(rev))
		for _, p := range s.pods {
			s.leave(p)
		}
		s.run("kubectl", "rollout", "restart", "deployment/hello")
		s.run("kubectl", "rollout", "status", "deployment/hello", "--timeout=5m")
		s.run("kubectl", "softreload", "resume", pool)
		s.waitRolledOut("the pods restarted with code image "+v1.Ref(), rev)
		s.joinPods()
		for _, p := range s.pods {
			s.answers(p, rev, v1.Greeting)
		}

		By("a new code image rolls over every pod; only softreload-code restarts")
		codeRestarts := s.restartsOf(codeContainer)
		before := s.webPIDs()
		s.rec.ResetMax()
		rev, at := s.newRevision(image(v2))
		s.waitRolledOut("the rollout of "+v2.Ref(), rev)
		s.measured("image", v1.Tag+" to "+v2.Tag, rev, at)
		s.withinBudget()
		s.replacedSince(before)
		for _, kp := range s.currentPods() {
			Expect(restarts(&kp, codeContainer)).To(Equal(codeRestarts[kp.Name]+1), "pod %s: restarts of %s", kp.Name, codeContainer)
			Expect(codeImage(&kp)).To(Equal(v2.Ref()), "pod %s: the image of %s", kp.Name, codeContainer)
		}
		for _, p := range s.pods {
			s.answers(p, rev, v2.Greeting)
			Expect(s.rec.TimesAsked(p.name, rev)).To(Equal(1), "pod %s was sent %s", p.name, rev)
		}
		s.unchanged()

		By("a broken code image fails on one pod, which rolls back")
		good := rev
		codeRestarts = s.restartsOf(codeContainer)
		before = s.webPIDs()
		s.rec.ResetMax()
		rev, at = s.newRevision(image(broken))
		s.waitDegraded(rev)
		s.waitAllAt(good)
		s.measured("image", v2.Tag+" to "+broken.Tag+", rolled back", good, at)
		var tried []string
		for _, p := range s.pods {
			if s.rec.TimesAsked(p.name, rev) > 0 {
				tried = append(tried, p.name)
			}
		}
		Expect(tried).To(HaveLen(1), "pods sent the broken image\n%s", s.rec)
		after := s.webPIDs()
		for _, kp := range s.currentPods() {
			Eventually(func() string { return codeImage(s.getPod(kp.Name)) }).WithTimeout(rolloutTimeout).WithPolling(poll).
				Should(Equal(v2.Ref()), "pod %s: the image of %s after the rollback", kp.Name, codeContainer)
			// The pod that tried the broken image delivers the good one
			// again, where its workers have run (and written) since.
			Eventually(func() bool { return runsFor(s.getPod(kp.Name), codeContainer, 5*time.Second) }).WithTimeout(rolloutTimeout).WithPolling(poll).
				Should(BeTrue(), "pod %s: container %s runs again after the rollback", kp.Name, codeContainer)
			if kp.Name != tried[0] {
				Expect(restarts(&kp, codeContainer)).To(Equal(codeRestarts[kp.Name]), "pod %s (not tried): restarts of %s", kp.Name, codeContainer)
				Expect(after[kp.Name]).To(Equal(before[kp.Name]), "pod %s (not tried): web workers", kp.Name)
			}
		}
		for _, p := range s.pods {
			s.answers(p, good, v2.Greeting)
		}
		s.withinBudget()
		s.unchanged()

		By("a pod created after the rollback starts with the good image and runs")
		s.run("kubectl", "scale", "deployment/hello", "--replicas=4")
		Eventually(func() int { return len(s.currentPods()) }).WithTimeout(rolloutTimeout).WithPolling(poll).Should(Equal(4))
		s.waitAllAt(good)
		s.run("kubectl", "rollout", "status", "deployment/hello", "--timeout=5m")
		s.joinPods()
		for _, kp := range s.currentPods() {
			Expect(codeImage(&kp)).To(Equal(v2.Ref()), "pod %s: the image of %s", kp.Name, codeContainer)
		}
		for _, p := range s.pods {
			s.answers(p, good, v2.Greeting)
		}
	})

	It("replaces every pod through the Eviction API, one at a time as a PodDisruptionBudget allows, when the gateway group changes with podReplacement Evict", func(ctx SpecContext) {
		s.ctx = ctx
		s.replaceOnGatewayChange()
	})
})
