package fakeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/rollout"
)

// Outcome is what an agent does with a revision it is told.
type Outcome int

const (
	// Succeed reports Ready (Reloading first if the reload lasts
	// ReloadingReportDelay).
	Succeed Outcome = iota
	// Fail reports Failed (Reloading first if the reload lasts
	// ReloadingReportDelay), still running the revision it ran before.
	Fail
	// Silent reports nothing at all.
	Silent
)

// FailMessage is the message of a Failed report.
const FailMessage = "worker http-0 exited with status 1: SyntaxError"

// Options say which pods the agents answer for and how. The zero value
// answers at once for every pod of all namespaces with 2 workers.
type Options struct {
	// Namespace whose pods the agents answer for; "" for all.
	Namespace string
	// Selector narrows the pods; nil for all.
	Selector labels.Selector
	// Delay is how long an agent reloads: the time between being told a
	// revision and its last report.
	Delay time.Duration
	// Workers is the number of workers each agent reports (default 2).
	Workers int32
	// Replacement is how the agents replace their workers, which decides
	// how many they report ready while they reload: with SurgeFirst (the
	// default, as the WorkerPool's) each new worker is ready before an old
	// one stops, so every worker stays ready; with StopFirst one is down.
	// The agent's supervisor counts them the same way.
	Replacement workersv1alpha1.ReplacementPolicy
	// OnError is told of what goes wrong: a report the API server refused
	// (other than for a pod that is gone), a watch that could not resume.
	// Nil ignores them.
	OnError func(error)
}

// Agents are the fake agents of the pods Options select.
type Agents struct {
	ctx  context.Context
	c    client.WithWatch
	opts Options

	mu      sync.Mutex
	behave  func(pod, rev string) Outcome
	groups  func(pod, rev string) []workersv1alpha1.AgentGroupStatus
	held    func(pod string) bool
	release chan struct{}
	pods    map[string]podState
	sent    map[string][]string
	wake    map[string]chan struct{}
	// inFlight counts the pods in flight now, by pool; maxInFlight is the
	// most since the last reset.
	inFlight, maxInFlight map[string]int
	total, maxTotal       int
	writes                int64
	perSecond             map[int64]int64
	firstTold, lastDone   time.Time
}

// podState is what the agents know of one pod from their watch.
type podState struct {
	rollout.Pod
	pool string
}

// Start starts the agents with cfg's credentials; they answer until ctx is
// done. It returns once they watch.
func Start(ctx context.Context, cfg *rest.Config, opts Options) (*Agents, error) {
	if opts.Workers == 0 {
		opts.Workers = 2
	}
	c, err := client.NewWithWatch(cfg, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("creating the fake agents' client: %w", err)
	}
	a := &Agents{
		ctx: ctx, c: c, opts: opts,
		behave:  func(string, string) Outcome { return Succeed },
		held:    func(string) bool { return false },
		release: make(chan struct{}),
		pods:    map[string]podState{}, sent: map[string][]string{}, wake: map[string]chan struct{}{},
		inFlight: map[string]int{}, maxInFlight: map[string]int{}, perSecond: map[int64]int64{},
	}
	w, err := a.watch("")
	if err != nil {
		return nil, err
	}
	go a.follow(w)
	return a, nil
}

func (a *Agents) watch(resourceVersion string) (watch.Interface, error) {
	opts := []client.ListOption{&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: resourceVersion}}}
	if a.opts.Namespace != "" {
		opts = append(opts, client.InNamespace(a.opts.Namespace))
	}
	if a.opts.Selector != nil {
		opts = append(opts, client.MatchingLabelsSelector{Selector: a.opts.Selector})
	}
	w, err := a.c.Watch(a.ctx, &corev1.PodList{}, opts...)
	if err != nil {
		return nil, fmt.Errorf("watching the pods of namespace %q: %w", a.opts.Namespace, err)
	}
	return w, nil
}

// follow records every pod event and, when a watch ends (the API server
// closes one that falls behind a burst), goes on from the last event seen.
func (a *Agents) follow(w watch.Interface) {
	var rv string
	for {
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			rv = pod.ResourceVersion
			a.record(ev.Type, pod)
		}
		if a.ctx.Err() != nil {
			return
		}
		var err error
		if w, err = a.watch(rv); err != nil {
			if a.ctx.Err() == nil {
				a.fail(fmt.Errorf("resuming the pod watch at resourceVersion %s: %w", rv, err))
			}
			return
		}
	}
}

func (a *Agents) record(typ watch.EventType, pod *corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := pod.Namespace + "/" + pod.Name
	old, known := a.pods[key]
	if known && rollout.InFlight(old.Pod) {
		a.inFlight[old.pool]--
		a.total--
	}
	if typ == watch.Deleted {
		delete(a.pods, key)
		return
	}
	st, _ := workersv1alpha1.ParseAgentStatus(pod.Annotations[workersv1alpha1.StatusAnnotation])
	now := podState{
		Pod:  rollout.Pod{Name: pod.Name, Desired: pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation], Report: st},
		pool: pod.Labels[workersv1alpha1.PoolLabel],
	}
	a.pods[key] = now
	if rollout.InFlight(now.Pod) {
		a.inFlight[now.pool]++
		a.total++
		a.maxInFlight[now.pool] = max(a.maxInFlight[now.pool], a.inFlight[now.pool])
		a.maxTotal = max(a.maxTotal, a.total)
	}
	if rollout.Runs(now.Pod, now.Desired) && !rollout.Runs(old.Pod, now.Desired) {
		a.lastDone = time.Now()
	}
	if now.Desired == "" || now.Desired == old.Desired {
		return
	}
	if a.firstTold.IsZero() {
		a.firstTold = time.Now()
	}
	a.sent[key] = append(a.sent[key], now.Desired)
	wake, ok := a.wake[key]
	if !ok {
		wake = make(chan struct{}, 1)
		a.wake[key] = wake
		go a.run(pod.Namespace, pod.Name, wake)
	}
	select {
	case wake <- struct{}{}:
	default:
	}
}

// run is the agent of one pod: it loads each revision it is told, one at a
// time, and reports, as the agent in a pod does.
func (a *Agents) run(ns, name string, wake <-chan struct{}) {
	var handled, running string
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-wake:
		}
		a.mu.Lock()
		rev, behave, held := a.pods[ns+"/"+name].Desired, a.behave, a.held(name)
		a.mu.Unlock()
		if rev == "" || rev == handled {
			continue
		}
		handled = rev
		what := behave(name, rev)
		if what == Silent {
			continue
		}
		n := a.opts.Workers
		if !a.reload(ns, name, workersv1alpha1.AgentStatus{Revision: rev, Running: running, State: workersv1alpha1.AgentReloading,
			Ready: a.readyWhileReloading(), Total: n}, held) {
			return
		}
		if what == Fail {
			a.report(ns, name, workersv1alpha1.AgentStatus{Revision: rev, Running: running, State: workersv1alpha1.AgentFailed,
				Ready: n, Total: n, Message: FailMessage})
			continue
		}
		running = rev
		a.report(ns, name, workersv1alpha1.AgentStatus{Revision: rev, Running: rev, State: workersv1alpha1.AgentReady, Ready: n, Total: n,
			Groups: a.groupsOf(name, rev)})
	}
}

// reload lasts Options.Delay, or until ReleaseHeld if held, and reports
// Reloading, as the agent does, only once it has lasted
// ReloadingReportDelay. It returns false if the agents stop first.
func (a *Agents) reload(ns, name string, reloading workersv1alpha1.AgentStatus, held bool) bool {
	if !held && a.opts.Delay < workersv1alpha1.ReloadingReportDelay {
		return a.opts.Delay <= 0 || a.sleep(a.opts.Delay)
	}
	if !a.sleep(workersv1alpha1.ReloadingReportDelay) {
		return false
	}
	a.report(ns, name, reloading)
	if held && !a.waitRelease() {
		return false
	}
	rest := a.opts.Delay - workersv1alpha1.ReloadingReportDelay
	return rest <= 0 || a.sleep(rest)
}

// readyWhileReloading is how many workers an agent reports ready during a
// reload (see Options.Replacement).
func (a *Agents) readyWhileReloading() int32 {
	if a.opts.Replacement == workersv1alpha1.StopFirst {
		return a.opts.Workers - 1
	}
	return a.opts.Workers
}

// waitRelease returns true once the held agents are released, false if
// the agents stop first.
func (a *Agents) waitRelease() bool {
	select {
	case <-a.ctx.Done():
		return false
	case <-a.release:
		return true
	}
}

// sleep returns true after d, false if the agents stop first.
func (a *Agents) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// report writes st into the pod's status annotation, as the agent does.
func (a *Agents) report(ns, name string, st workersv1alpha1.AgentStatus) {
	b, err := json.Marshal(st)
	if err != nil {
		a.fail(fmt.Errorf("encoding the report of pod %s/%s: %w", ns, name, err))
		return
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		workersv1alpha1.StatusAnnotation: string(b)}}})
	if err != nil {
		a.fail(fmt.Errorf("encoding the patch of pod %s/%s: %w", ns, name, err))
		return
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	err = a.c.Patch(a.ctx, pod, client.RawPatch(types.MergePatchType, patch))
	a.mu.Lock()
	a.writes++
	a.perSecond[time.Now().Unix()]++
	a.mu.Unlock()
	if err != nil && !apierrors.IsNotFound(err) && a.ctx.Err() == nil {
		a.fail(fmt.Errorf("agent of pod %s/%s: reporting %s for revision %s: %w", ns, name, st.State, st.Revision, err))
	}
}

func (a *Agents) fail(err error) {
	if a.opts.OnError != nil {
		a.opts.OnError(err)
	}
}

// SetGroups decides what the agents' Ready reports say of the groups (the
// report's groups: which spec each runs, and which are outdated) from now
// on; nil, the default, says nothing of them.
func (a *Agents) SetGroups(f func(pod, rev string) []workersv1alpha1.AgentGroupStatus) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.groups = f
}

func (a *Agents) groupsOf(pod, rev string) []workersv1alpha1.AgentGroupStatus {
	a.mu.Lock()
	f := a.groups
	a.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(pod, rev)
}

// SetBehaviour decides what the agents do with each revision from now on.
func (a *Agents) SetBehaviour(f func(pod, rev string) Outcome) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.behave = f
}

// Hold makes the agents of the pods f picks stop in their reload (reported
// Reloading after ReloadingReportDelay), until ReleaseHeld.
func (a *Agents) Hold(f func(pod string) bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held = f
}

// ReleaseHeld lets the held agents go on. It may be called once.
func (a *Agents) ReleaseHeld() { close(a.release) }

// ResetCounts starts counting anew: the most pods in flight from the pods
// as they are now, the writes from zero, and the times of the first pod
// told and the last pod updated from none.
func (a *Agents) ResetCounts() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.maxInFlight = maps.Clone(a.inFlight)
	a.maxTotal = a.total
	a.writes, a.perSecond = 0, map[int64]int64{}
	a.firstTold, a.lastDone = time.Time{}, time.Time{}
}

// InFlight is the number of pods in flight now, as the agents' watch shows
// them.
func (a *Agents) InFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// MaxInFlight is the most pods in flight at once since the start or the
// last ResetCounts, of all the pods watched.
func (a *Agents) MaxInFlight() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxTotal
}

// MaxInFlightByPool is MaxInFlight for each pool, by the value of the
// pods' softreload.dev/pool label ("" for pods without it).
func (a *Agents) MaxInFlightByPool() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.maxInFlight)
}

// Running is the number of pods told rev whose agent reports it ready.
func (a *Agents) Running(rev string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, p := range a.pods {
		if rollout.Runs(p.Pod, rev) {
			n++
		}
	}
	return n
}

// SentTo returns the revisions the pod (namespace/name) was told, in order.
func (a *Agents) SentTo(pod string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.sent[pod]...)
}

// Writes is the number of reports written since the start or the last
// ResetCounts.
func (a *Agents) Writes() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.writes
}

// WritesPerSecond counts the reports written since the start or the last
// ResetCounts by the Unix second they were written in.
func (a *Agents) WritesPerSecond() map[int64]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.perSecond)
}

// Times returns when, since the start or the last ResetCounts, a pod was
// first told a new revision and a pod last came to run its desired one;
// zero times if none did.
func (a *Agents) Times() (firstTold, lastDone time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.firstTold, a.lastDone
}
