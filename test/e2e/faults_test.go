//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/agentaccess"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/procstat"
)

// The faults of a running pool, injected for real: processes killed and
// signalled, the API server stopped, the manager away, a snapshot that
// cannot be read. Each step ends with the pool Available.

// managerOutage is how long the manager stays away in managerDown: longer
// than the minute after which an agent used to give up on a snapshot it
// could not read.
const managerOutage = 2 * time.Minute

// agentKilled: an agent killed with SIGKILL (a crash, the OOM killer) takes
// its workers with it: none is left running, and nothing accepts
// connections on the pod's ports. Started again, as the kubelet restarts a
// container, it serves the revision it ran, and is not sent it again.
func (s *suite) agentKilled() {
	s.stopGatewayLoad() // the gateway of the killed agent goes with it
	s.rec.ResetMax()
	p := s.pods[2]
	rev := s.currentRevision()
	st := workers(s.ctx, p)
	pids := slices.Concat(st.PIDs("web"), st.PIDs("gateway"))
	procs := processes(pids)
	asked := len(s.rec.Pod(p.Name).Asked)

	s.holdLoad(p)
	s.must(s.cluster.KillAgent(p.Name))
	waitFor("the killed agent's workers exit with it", 30*time.Second, func() (bool, string) {
		left := running(procs)
		return len(left) == 0, fmt.Sprintf("workers still running (of %v):\n  %s", pids, strings.Join(left, "\n  "))
	})
	for _, port := range []int{local.ExampleWebPort, local.ExampleGWPort} {
		conn, err := net.DialTimeout("tcp", p.Addr(port), time.Second)
		if err == nil {
			_ = conn.Close()
		}
		Expect(err).To(HaveOccurred(), func() string {
			return fmt.Sprintf("pod %s: %s still accepts connections with its agent killed: an orphan holds the socket: %v", p.Name, p.Addr(port), listeners(p.PortOffset+port))
		})
	}

	s.must(s.cluster.RestartAgent(p.Name))
	s.waitServing(p, rev, rolloutTimeout)
	s.releaseLoad(p)
	s.waitRolledOut("the restarted pod reports "+rev, rev)
	Expect(s.rec.Pod(p.Name).Asked[asked:]).To(BeEmpty(), "pod %s was sent a revision again after its agent restarted", p.Name)
	s.withinBudget()
}

// agentHangup: SIGHUP (a closed terminal, a careless kill -HUP 1) does not
// end an agent, and leaves its workers alone.
func (s *suite) agentHangup() {
	p := s.pods[0]
	rev := s.currentRevision()
	before := workers(s.ctx, p)
	pid, _, err := s.cluster.AgentPID(p.Name)
	s.must(err)

	s.must(s.cluster.SignalAgent(p.Name, syscall.SIGHUP))
	// A process takes a pending signal before it runs its own code again:
	// an answer on the control socket comes after the SIGHUP was handled.
	after, err := agentStatus(s.ctx, p)
	Expect(err).NotTo(HaveOccurred(), "pod %s: the agent no longer answers after SIGHUP", p.Name)
	now, alive, err := s.cluster.AgentPID(p.Name)
	Expect(err).NotTo(HaveOccurred(), "pod %s: the agent (pid %d) after SIGHUP", p.Name, pid)
	Expect(alive).To(BeTrue(), "pod %s: the agent (pid %d) did not survive SIGHUP", p.Name, pid)
	Expect(now).To(Equal(pid), "pod %s: the agent's pid after SIGHUP", p.Name)
	for _, g := range []string{"web", "gateway"} {
		Expect(after.PIDs(g)).To(Equal(before.PIDs(g)), "pod %s: %s workers on SIGHUP", p.Name, g)
	}
	Expect(after.Agent.State).To(Equal(v1alpha1.AgentReady), "pod %s: after SIGHUP the agent says %+v", p.Name, after.Agent)
	Expect(after.Agent.Running).To(Equal(rev), "pod %s: after SIGHUP the agent says %+v", p.Name, after.Agent)
	s.answers(p, rev, s.greeting())
	Expect(workers(s.ctx, p).PIDs("web")).To(Equal(before.PIDs("web")), "pod %s: web workers after SIGHUP", p.Name)
}

// agentRestartedWithoutAPI: with the API server down, an agent is killed
// and started again (the kubelet restarts a crashed container). It serves
// the revision it ran, from what it kept on disk, within seconds and
// without the API server; the other pods serve on; once the API server is
// back its report catches up.
func (s *suite) agentRestartedWithoutAPI() {
	s.stopGatewayLoad() // the gateway of the killed agent goes with it
	s.rec.ResetMax()
	p := s.pods[1]
	rev := s.currentRevision()
	asked := len(s.rec.Pod(p.Name).Asked)

	s.holdLoad(p)
	s.must(s.cluster.StopAPIServer())
	apiDown := true
	defer func() {
		if apiDown { // a failed step: leave the cluster whole for the logs
			_ = s.cluster.StartAPIServer()
		}
	}()
	s.must(s.cluster.KillAgent(p.Name))
	s.must(s.cluster.RestartAgent(p.Name))
	restarted := time.Now()
	s.waitServing(p, rev, 30*time.Second)
	logf("pod %s serves %s %v after its agent restarted, with the API server down", p.Name, rev, time.Since(restarted).Round(time.Millisecond))
	s.releaseLoad(p)
	// It serves on while the API server is still away: the load reaches
	// it, and every pod answers.
	served := s.load.Snapshot()[s.target(p)].OK
	waitFor("the load reaches the restarted pod", 30*time.Second, func() (bool, string) {
		st := s.load.Snapshot()[s.target(p)]
		return st.OK > served+20, fmt.Sprintf("%+v", st)
	})

	apiDown = false
	s.must(s.cluster.StartAPIServer())
	s.waitRolledOut("the pods' reports after the outage", rev)
	Expect(s.rec.Pod(p.Name).Asked[asked:]).To(BeEmpty(), "pod %s was sent a revision again after its agent restarted", p.Name)
	s.withinBudget()
}

// newerRevisionDuringFetch: an agent is told a revision whose snapshot it
// cannot read, and while it retries, a newer revision arrives. The agent
// leaves the fetch and goes to the newer revision; the one it never read
// is superseded, not failed.
//
// The order is made sure of: the agents are held (SIGSTOP; their workers
// serve on) until the first pod is told the revision and the manager is
// gone; the snapshot is then deleted, so that no retry can ever read it.
func (s *suite) newerRevisionDuringFetch() {
	marks := s.marks()
	s.holdAgents()
	skipped := s.changeCode("greeting.txt", "Hello from a revision never read\n")
	first := s.waitFirstAsked(skipped)
	s.must(s.cluster.KillManager())
	snapshot := poolrevision.SnapshotName(local.ExamplePool, skipped)
	s.must(s.c.Delete(s.ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: snapshot}}))
	logged := s.logSize(first)
	s.releaseAgents()
	s.waitLogged(first, logged, snapshot, "the agent of "+first.Name+" tries to fetch "+snapshot)
	logf("the agent of %s waits for snapshot %s, which is gone; the manager comes back with a newer revision", first.Name, snapshot)

	known := s.snapshots()
	s.writeCode("greeting.txt", "Hello from the newer revision\n")
	s.must(s.cluster.StartManager())
	back := time.Now()
	rev := s.waitNewRevision(known)
	s.waitRolledOut("the rollout of "+rev, rev)
	logf("revision %s everywhere %v after the manager came back", rev, time.Since(back).Round(time.Millisecond))
	s.withinBudget()
	for _, p := range s.pods {
		v := s.rec.Pod(p.Name)
		for _, r := range v.Reports[marks[p.Name].reports:] {
			Expect(r.State).NotTo(Equal(v1alpha1.AgentFailed), "pod %s reported %s Failed (%s): a revision left for a newer one has not failed", p.Name, r.Revision, r.Message)
			ran := r.Running == skipped || r.Revision == skipped && r.State == v1alpha1.AgentReady
			Expect(ran).To(BeFalse(), "pod %s ran revision %s, whose snapshot it never could read: %+v", p.Name, skipped, r)
		}
		Expect(s.rec.TimesAsked(p.Name, rev)).To(Equal(1), "pod %s was sent revision %s that many times, want once", p.Name, rev)
		s.answers(p, rev, "Hello from the newer revision")
	}
}

// managerDown: the manager goes away for two minutes just after it told
// the first pod a new revision and before the agents' Role names the
// revision's snapshot. The agent cannot read the snapshot all that time;
// it waits, serving the old revision, and fails nothing. Once the manager
// is back, the agent reads the snapshot and the rollout completes: no
// rollback, no failure reported, and the pool not Degraded at the end
// (while nothing moves it may say ProgressDeadlineExceeded).
func (s *suite) managerDown() {
	good := s.currentRevision()
	oldGreeting := s.greeting()
	marks := s.marks()
	s.holdAgents()
	rev := s.changeCode("greeting.txt", "Hello after the manager's outage\n")
	first := s.waitFirstAsked(rev)
	s.must(s.cluster.KillManager())
	down := time.Now()
	snapshot := poolrevision.SnapshotName(local.ExamplePool, rev)
	s.revokeSnapshot(snapshot)
	logged := s.logSize(first)
	s.releaseAgents()
	s.waitLogged(first, logged, snapshot, "the agent of "+first.Name+" is refused "+snapshot)
	logf("the agent of %s is refused snapshot %s; the manager stays away for %v", first.Name, snapshot, managerOutage)

	time.Sleep(managerOutage - time.Since(down)) // the outage itself
	s.noFailureSince(marks)
	s.answers(first, good, oldGreeting)
	s.must(s.cluster.StartManager())

	s.waitRolledOut("the rollout of "+rev+" after the manager's outage", rev)
	s.withinBudget()
	s.noFailureSince(marks)
	pool, desc := getPool(s.ctx, s.c, s.ns)
	if pool == nil {
		Fail(desc)
	}
	d := meta.FindStatusCondition(pool.Status.Conditions, v1alpha1.ConditionDegraded)
	Expect(d != nil && d.Status == metav1.ConditionTrue).To(BeFalse(), "the pool is Degraded after the manager's outage:\n%s", desc)
	for _, p := range s.pods {
		Expect(s.rec.Pod(p.Name).Asked[marks[p.Name].asked:]).To(Equal([]string{rev}), "pod %s was sent since the change, want only %s (no rollback)", p.Name, rev)
		s.answers(p, rev, "Hello after the manager's outage")
	}
}

// mark is how much the recorder held of a pod when a step began.
type mark struct{ asked, reports int }

func (s *suite) marks() map[string]mark {
	out := map[string]mark{}
	for _, p := range s.pods {
		v := s.rec.Pod(p.Name)
		out[p.Name] = mark{asked: len(v.Asked), reports: len(v.Reports)}
	}
	return out
}

// noFailureSince checks that no pod reported a failure since marks.
func (s *suite) noFailureSince(marks map[string]mark) {
	GinkgoHelper()
	for _, p := range s.pods {
		for _, r := range s.rec.Pod(p.Name).Reports[marks[p.Name].reports:] {
			Expect(r.State).NotTo(Equal(v1alpha1.AgentFailed), "pod %s reported revision %s Failed: %s", p.Name, r.Revision, r.Message)
		}
	}
}

// holdAgents stops every agent (SIGSTOP): its watch, fetches and reports
// wait, its workers serve on.
func (s *suite) holdAgents() {
	for _, p := range s.pods {
		s.must(s.cluster.SignalAgent(p.Name, syscall.SIGSTOP))
	}
}

func (s *suite) releaseAgents() {
	for _, p := range s.pods {
		s.must(s.cluster.SignalAgent(p.Name, syscall.SIGCONT))
	}
}

// waitFirstAsked returns the first pod the manager tells rev.
func (s *suite) waitFirstAsked(rev string) *local.Pod {
	GinkgoHelper()
	var first *local.Pod
	start := time.Now()
	waitFor("a pod is told "+rev, rolloutTimeout, func() (bool, string) {
		for _, p := range s.pods {
			if s.rec.Pod(p.Name).Desired == rev {
				first = p
				return true, ""
			}
		}
		return false, s.describePods()
	})
	logf("pod %s told %s %v after the revision was made", first.Name, rev, time.Since(start).Round(time.Millisecond))
	return first
}

// revokeSnapshot takes the snapshot's name out of the agents' Role, as it
// is before the manager grants a new snapshot, and waits until the API
// server refuses the pods' service account to read it.
func (s *suite) revokeSnapshot(name string) {
	GinkgoHelper()
	role := &rbacv1.Role{}
	s.must(s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: agentaccess.Name}, role))
	var rules []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "configmaps") {
			r.ResourceNames = slices.DeleteFunc(slices.Clone(r.ResourceNames), func(n string) bool { return n == name })
			if len(r.ResourceNames) == 0 {
				continue // a rule without names would grant every ConfigMap
			}
		}
		rules = append(rules, r)
	}
	role.Rules = rules
	s.must(s.c.Update(s.ctx, role))
	waitFor("the agents may no longer read "+name, 30*time.Second, func() (bool, string) {
		review := agentaccess.ServiceAccountReview(s.ns, "app", authorizationv1.ResourceAttributes{
			Namespace: s.ns, Verb: "get", Resource: "configmaps", Name: name,
		})
		if err := s.c.Create(s.ctx, review); err != nil {
			return false, err.Error()
		}
		return !review.Status.Allowed, fmt.Sprintf("%+v", review.Status)
	})
}

// writeCode sets one file of the code ConfigMap without waiting for the
// revision (the manager may be away).
func (s *suite) writeCode(file, content string) {
	GinkgoHelper()
	s.rec.ResetMax()
	s.app[file] = content
	cm := &corev1.ConfigMap{}
	s.must(s.c.Get(s.ctx, client.ObjectKey{Namespace: s.ns, Name: local.ExampleCode}, cm))
	cm.Data = map[string]string{}
	for k, v := range s.app {
		cm.Data[k] = v
	}
	s.must(s.c.Update(s.ctx, cm))
}

// waitNewRevision waits for a snapshot not in known and returns its
// revision.
func (s *suite) waitNewRevision(known map[string]string) string {
	GinkgoHelper()
	var rev string
	waitFor("a new revision", rolloutTimeout, func() (bool, string) {
		for name, r := range s.snapshots() {
			if _, ok := known[name]; !ok {
				rev = r
				return true, ""
			}
		}
		return false, fmt.Sprintf("snapshots: %v", known)
	})
	return rev
}

// waitServing waits until pod p's agent answers, Ready at rev, and the pod
// answers requests from rev, and its gateway a new WebSocket connection's
// messages.
func (s *suite) waitServing(p *local.Pod, rev string, timeout time.Duration) {
	GinkgoHelper()
	waitFor("pod "+p.Name+" serves "+rev+" again", timeout, func() (bool, string) {
		st, err := agentStatus(s.ctx, p)
		if err != nil {
			return false, err.Error()
		}
		return st.Agent.State == v1alpha1.AgentReady && st.Agent.Running == rev, fmt.Sprintf("%+v", st.Agent)
	})
	// The agent was restarted, and its gateway with it: the clients of the
	// old one lost their connections, as a pod's would.
	s.redialGateway(p)
	s.answers(p, rev, s.greeting())
}

// greeting is what the pods answer with the code as it is now.
func (s *suite) greeting() string { return strings.TrimSpace(s.app["greeting.txt"]) }

func (s *suite) target(p *local.Pod) string {
	return "http://" + p.Addr(local.ExampleWebPort) + "/"
}

// holdLoad stops the load on pod p, as a Service stops routing to a pod
// that is not ready; releaseLoad sends it again.
func (s *suite) holdLoad(p *local.Pod)    { s.load.Pause(s.target(p)) }
func (s *suite) releaseLoad(p *local.Pod) { s.load.Resume(s.target(p)) }

// redialGateway opens a new long-lived connection to pod p's gateway,
// whose old one went with the agent that was killed, and records the new
// gateway worker.
func (s *suite) redialGateway(p *local.Pod) {
	GinkgoHelper()
	s.gateways[p.Name].Close()
	g, err := local.DialGateway(p.Addr(local.ExampleGWPort))
	s.must(err)
	// Closed when the suite ends, with every gateway: later steps use it.
	s.gateways[p.Name] = g
	s.gatewayPIDs[p.Name] = workers(s.ctx, p).PIDs("gateway")
}

func (s *suite) logSize(p *local.Pod) int64 {
	fi, err := os.Stat(s.cluster.LogPath(p.Name))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// waitLogged waits until pod p's log, past offset, mentions text. It can
// take a while: an agent's watch that broke (here, soon after the API
// server's outage, it did once an agent was held) is resumed by client-go
// after a backoff that the outage grew, up to a minute, and that is reset
// only after two minutes without an error.
func (s *suite) waitLogged(p *local.Pod, offset int64, text, what string) {
	GinkgoHelper()
	start := time.Now()
	defer func() { logf("%s: %v", what, time.Since(start).Round(time.Millisecond)) }()
	waitFor(what, rolloutTimeout, func() (bool, string) {
		b, err := os.ReadFile(s.cluster.LogPath(p.Name))
		if err != nil {
			return false, err.Error()
		}
		if int64(len(b)) < offset {
			offset = 0
		}
		return bytes.Contains(b[offset:], []byte(text)), fmt.Sprintf("no mention of %s in %s", text, s.cluster.LogPath(p.Name))
	})
}

// listeners describes the processes that hold a socket listening on tcp
// port port, from /proc/net/tcp and each process's descriptors.
func listeners(port int) []string {
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(table)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st ... inode (the tenth field)
			f := strings.Fields(line)
			if len(f) > 9 && f[3] == "0A" && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
				inodes["socket:["+f[9]+"]"] = true
			}
		}
	}
	var out []string
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || !inodes[target] {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
		st, _ := procstat.Read(pid)
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, fmt.Sprintf("pid %d (%s) state %c, parent %d: %s", pid, st.Comm, st.State, st.PPid, strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return out
}

// processes records the processes behind pids, to tell later whether they
// still run.
func processes(pids []int) map[int]procstat.Stat {
	out := map[int]procstat.Stat{}
	for _, pid := range pids {
		if st, err := procstat.Read(pid); err == nil {
			out[pid] = st
		}
	}
	return out
}

// running describes the processes of procs that still run: not exited (an
// exited process its parent has not reaped yet does not run), and not a
// new process that was given the same pid.
func running(procs map[int]procstat.Stat) []string {
	var out []string
	for pid, was := range procs {
		st, err := procstat.Read(pid)
		if err != nil || st.StartTime != was.StartTime || st.Exited() {
			continue
		}
		out = append(out, fmt.Sprintf("pid %d (%s) state %c, parent %d (its parent was %d)", pid, st.Comm, st.State, st.PPid, was.PPid))
	}
	slices.Sort(out)
	return out
}
