package pod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/revision"
)

// Engine is the reload engine the agent drives: agent/supervisor's
// Supervisor.
type Engine interface {
	// Run runs the workers until ctx is done, then drains them.
	Run(ctx context.Context) error
	// RequestReload asks for a reload to revision, whose code is in
	// codeDir, with its groups, and returns at once.
	RequestReload(rev Revision)
	// Subscribe delivers the engine's status each time it changes.
	Subscribe() (<-chan v1alpha1.AgentStatus, func())
}

// Revision is a revision as the agent runs it.
type Revision struct {
	// Name is the revision's name (its content hash).
	Name string
	// Spec holds the groups and how to replace workers.
	Spec revision.Spec
	// Dir is the revision's code directory.
	Dir string
}

// Options configure an Agent. Zero values mean the defaults.
type Options struct {
	// Client reaches the API server with the pod's own token (NewClient).
	Client Client
	// Namespace, PodName and Pool locate the pod and its pool's snapshots.
	Namespace, PodName, Pool string
	// CodeRoot is the directory that holds the revisions' code. It outlives
	// the agent's container (an emptyDir of the pod): the agent keeps there
	// what it runs, to serve it again at once after a restart.
	CodeRoot string
	// NewEngine builds the engine for the first revision the pod runs.
	NewEngine func(first Revision) (Engine, error)
	// ImageTimeout bounds the wait for the code container to deliver a
	// code image (5 minutes): an image that never arrives fails its
	// revision. A snapshot that cannot be read yet is waited for without
	// a bound: not being allowed to read it, or not reaching the API
	// server, says nothing about the code.
	ImageTimeout time.Duration
	// KeepRevisions is how many unused revision directories stay on disk
	// for a quick way back (2).
	KeepRevisions int
	// Logger logs what the agent does; slog.Default() by default.
	Logger *slog.Logger
}

// Agent runs a pod's workers at the revision its pod annotation asks for.
type Agent struct {
	opts Options
	log  *slog.Logger

	// pods receives the newest version of the agent's own pod.
	pods chan *corev1.Pod
	// pod is the newest version of the pod, for a fetch to read the state
	// of the code container.
	pod atomic.Pointer[corev1.Pod]
	// publish receives the report to write to the pod, newest only.
	publish chan v1alpha1.AgentStatus
}

// New checks opts and returns an agent that is not running yet.
func New(opts Options) (*Agent, error) {
	switch {
	case opts.Client == nil:
		return nil, errors.New("pod agent: no API client")
	case opts.Namespace == "" || opts.PodName == "":
		return nil, errors.New("pod agent: POD_NAMESPACE and POD_NAME must be set (the downward API)")
	case opts.Pool == "":
		return nil, errors.New("pod agent: SOFTRELOAD_POOL must name the pod's WorkerPool")
	case opts.CodeRoot == "":
		return nil, errors.New("pod agent: SOFTRELOAD_CODE_ROOT must name the code directory")
	case opts.NewEngine == nil:
		return nil, errors.New("pod agent: no engine")
	}
	if opts.ImageTimeout <= 0 {
		opts.ImageTimeout = 5 * time.Minute
	}
	if opts.KeepRevisions <= 0 {
		opts.KeepRevisions = 2
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Agent{
		opts:    opts,
		log:     opts.Logger.With("pod", opts.Namespace+"/"+opts.PodName),
		pods:    make(chan *corev1.Pod, 1),
		publish: make(chan v1alpha1.AgentStatus, 1),
	}, nil
}

// Run follows the pod until ctx is done, then drains the workers and
// returns. A restarted agent serves the revision it ran before at once,
// from its code root, without waiting for the API server.
func (a *Agent) Run(ctx context.Context) error {
	watchErr, err := a.watchPod(ctx)
	if err != nil {
		return err
	}
	go a.publisher(ctx)

	l := &loop{
		a:        a,
		failed:   map[string]string{},
		known:    map[string]Revision{},
		done:     make(chan error, 1),
		results:  make(chan fetchResult),
		progress: make(chan fetchProgress),
	}
	defer l.close()
	if rev, ok := a.loadRunning(); ok {
		a.log.Info("Serving the revision this pod ran before the agent restarted", "revision", rev.Name)
		if err := l.startEngine(ctx, rev); err != nil {
			return err
		}
		l.saved = rev.Name
	}
	for {
		select {
		case <-ctx.Done():
			if l.engine == nil {
				return nil
			}
			return <-l.done
		case err := <-l.done:
			return err
		case err := <-watchErr:
			return err
		case p := <-a.pods:
			l.onPod(p)
		case st := <-l.engineCh:
			l.onEngine(st)
		case r := <-l.results:
			if err := l.onFetched(ctx, r); err != nil {
				return err
			}
		case p := <-l.progress:
			if p.rev == l.fetching {
				l.waiting = p.message
			}
		}
		l.report()
		l.step(ctx)
	}
}

// loop is the state of a running agent, owned by Run's goroutine.
type loop struct {
	a *Agent

	// seen says the pod was read once; prior is its report then.
	seen  bool
	prior v1alpha1.AgentStatus
	// desired is the pod's desired revision.
	desired string
	// failed holds the revisions that failed here, with why. A revision
	// that failed is never tried again, not after a restart either, since
	// the agent's last report says so.
	failed map[string]string

	engine   Engine
	engineCh <-chan v1alpha1.AgentStatus
	cancel   func() // ends the subscription to engineCh
	done     chan error
	first    string // what the engine started with: non-reloadable groups run it
	asked    string // the newest revision asked of the engine
	last     v1alpha1.AgentStatus
	known    map[string]Revision // revisions fetched, by name
	saved    string              // the revision kept in the code root as running

	// fetching is the revision being fetched, stopFetch cancels it, and
	// waiting says what it waits for.
	fetching  string
	stopFetch context.CancelFunc
	waiting   string
	results   chan fetchResult
	progress  chan fetchProgress
}

type fetchResult struct {
	rev Revision
	err error
}

type fetchProgress struct{ rev, message string }

func (l *loop) close() {
	l.endFetch()
	if l.cancel != nil {
		l.cancel()
	}
}

func (l *loop) onPod(p *corev1.Pod) {
	l.a.pod.Store(p)
	l.desired = p.Annotations[v1alpha1.DesiredRevisionAnnotation]
	if l.seen {
		return
	}
	l.seen = true
	prior, err := v1alpha1.ParseAgentStatus(p.Annotations[v1alpha1.StatusAnnotation])
	if err != nil {
		l.a.log.Info("Ignoring the pod's last report", "err", err)
	}
	if prior != nil {
		l.prior = *prior
		if prior.State == v1alpha1.AgentFailed && prior.Revision != "" {
			l.failed[prior.Revision] = prior.Message
		}
	}
}

func (l *loop) onEngine(st v1alpha1.AgentStatus) {
	l.last = st
	if st.State == v1alpha1.AgentFailed {
		// The engine went back to what ran before; asking for that
		// revision again (a rollback) replaces nothing and has the engine
		// report Ready.
		l.failed[st.Revision] = st.Message
	}
	running := st.Running
	if st.State == v1alpha1.AgentReady {
		running = st.Revision
	}
	if rev, ok := l.known[running]; ok && running != l.saved {
		if err := l.a.saveRunning(rev); err != nil {
			l.a.log.Info("Could not keep the running revision for a restart", "revision", running, "err", err)
			return
		}
		l.saved = running
	}
}

func (l *loop) onFetched(ctx context.Context, r fetchResult) error {
	if r.rev.Name != l.fetching {
		return nil // a fetch that was called off
	}
	l.endFetch()
	if r.err != nil {
		l.a.log.Error("Cannot load revision", "revision", r.rev.Name, "err", r.err)
		l.failed[r.rev.Name] = r.err.Error()
		return nil
	}
	rev := r.rev
	l.known[rev.Name] = rev
	l.asked = rev.Name
	if l.engine == nil {
		if err := l.startEngine(ctx, rev); err != nil {
			return err
		}
	} else {
		l.engine.RequestReload(rev)
	}
	if err := PruneRevisions(l.a.opts.CodeRoot, l.a.opts.KeepRevisions, l.first, rev.Name, l.saved, l.last.Running, l.last.Revision); err != nil {
		l.a.log.Info("Could not prune old revisions", "err", err)
	}
	return nil
}

// startEngine starts the workers at rev.
func (l *loop) startEngine(ctx context.Context, rev Revision) error {
	engine, err := l.a.opts.NewEngine(rev)
	if err != nil {
		return fmt.Errorf("starting the workers of revision %s: %w", rev.Name, err)
	}
	l.engine, l.first, l.asked = engine, rev.Name, rev.Name
	l.known[rev.Name] = rev
	l.engineCh, l.cancel = engine.Subscribe()
	go func() { l.done <- engine.Run(ctx) }()
	return nil
}

// step starts fetching the revision the pod should run, and calls off a
// fetch that is no longer wanted: a newer desired revision (a rollback,
// say) never waits for an older one's fetch.
func (l *loop) step(ctx context.Context) {
	if !l.seen {
		return
	}
	target := l.desired
	if _, bad := l.failed[target]; bad {
		// Keep what runs, or, with nothing running yet, run what ran
		// before the failed revision.
		target = ""
		if l.engine == nil {
			target = l.prior.Running
		}
	}
	if target == "" || target == l.asked {
		l.endFetch()
		return
	}
	if target == l.fetching {
		return
	}
	l.endFetch()
	fctx, cancel := context.WithCancel(ctx)
	l.fetching, l.stopFetch = target, cancel
	go func() {
		rev, err := l.a.fetch(fctx, target, func(message string) {
			select {
			case l.progress <- fetchProgress{rev: target, message: message}:
			case <-fctx.Done():
			}
		})
		if fctx.Err() != nil {
			return // called off: nobody waits for the result
		}
		rev.Name = target
		select {
		case l.results <- fetchResult{rev: rev, err: err}:
		case <-fctx.Done():
		}
	}()
}

func (l *loop) endFetch() {
	if l.stopFetch != nil {
		l.stopFetch()
	}
	l.fetching, l.stopFetch, l.waiting = "", nil, ""
}

// report publishes the pod's status: the engine's, except that a desired
// revision that failed here is reported Failed (with what runs instead)
// until the controller asks for another, and a desired revision whose code
// is not there yet is reported Reloading, saying what the agent waits for.
func (l *loop) report() {
	if !l.seen {
		// Nothing until the pod's last report has been read: writing over
		// it first would lose a failure it remembers.
		return
	}
	st := statusFor(l.desired, l.last, l.failed)
	if l.fetching != "" && l.fetching == l.desired && l.waiting != "" {
		if st.Running == "" && l.last.State == v1alpha1.AgentReady {
			st.Running = l.last.Revision
		}
		st.Revision, st.State, st.Message = l.desired, v1alpha1.AgentReloading, l.waiting
	}
	if st.Revision == "" && st.State == "" {
		return
	}
	// The controller refuses a report whose message is too long; what the
	// agent says itself (a fetch's error) may be.
	st.Message = v1alpha1.ShortenAgentMessage(st.Message)
	replaceLatest(l.a.publish, st)
}

// statusFor is the engine's status, except that a desired revision that
// failed here is reported Failed (with what runs instead).
func statusFor(desired string, engine v1alpha1.AgentStatus, failed map[string]string) v1alpha1.AgentStatus {
	why, bad := failed[desired]
	if !bad || engine.State == v1alpha1.AgentReloading {
		return engine
	}
	st := engine
	st.Revision, st.State, st.Message = desired, v1alpha1.AgentFailed, why
	if engine.State == v1alpha1.AgentReady {
		st.Running = engine.Revision
	}
	return st
}

// watchPod starts an informer on the pod itself that feeds each version of
// it to a.pods. It does not wait for the API server: the returned channel
// reports a pod that turns out not to exist.
func (a *Agent) watchPod(ctx context.Context) (<-chan error, error) {
	informer := cache.NewSharedIndexInformer(a.opts.Client.PodListWatch(a.opts.Namespace, a.opts.PodName), &corev1.Pod{}, 0, cache.Indexers{})
	onPod := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			replaceLatest(a.pods, pod)
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watching pod %s/%s: %w", a.opts.Namespace, a.opts.PodName, err)
	}
	go informer.RunWithContext(ctx)
	a.log.Info("Waiting for the pod's annotations")
	missing := make(chan error, 1)
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			return
		}
		if _, ok, _ := informer.GetStore().GetByKey(a.opts.Namespace + "/" + a.opts.PodName); !ok {
			missing <- fmt.Errorf("pod %s/%s not found: POD_NAME and POD_NAMESPACE must name the agent's own pod", a.opts.Namespace, a.opts.PodName)
		}
	}()
	return missing, nil
}

// fetch reads revision rev's snapshot and puts its code in place: the
// snapshot's files in a new revision directory, or, for a code image, the
// directory the code container delivers. It tells progress what it waits
// for. Only the revision itself can make it fail: a snapshot that cannot be
// read yet is waited for until ctx is done.
func (a *Agent) fetch(ctx context.Context, rev string, progress func(string)) (Revision, error) {
	cm, err := a.readSnapshot(ctx, rev, progress)
	if err != nil {
		return Revision{}, err
	}
	spec, err := revision.SpecFrom(cm)
	if err != nil {
		return Revision{}, err
	}
	if spec.Image != nil {
		dir, err := a.waitForImage(ctx, rev, *spec.Image, progress)
		if err != nil {
			return Revision{}, err
		}
		return Revision{Name: rev, Spec: spec, Dir: dir}, nil
	}
	files, err := revision.FilesOf(cm)
	if err != nil {
		return Revision{}, err
	}
	dir, err := WriteRevision(a.opts.CodeRoot, rev, files)
	if err != nil {
		return Revision{}, err
	}
	return Revision{Name: rev, Spec: spec, Dir: dir}, nil
}

// readSnapshot reads revision rev's snapshot, retrying with backoff for as
// long as it does not exist, may not be read (the agents' Role names a new
// snapshot a moment after the controller makes it, and not at all while the
// manager is down) or the API server cannot be reached.
func (a *Agent) readSnapshot(ctx context.Context, rev string, progress func(string)) (*corev1.ConfigMap, error) {
	name := revision.SnapshotName(a.opts.Pool, rev)
	start := time.Now()
	var (
		cm      *corev1.ConfigMap
		lastWhy string
	)
	err := retry(ctx, func() (bool, error) {
		var err error
		cm, err = a.opts.Client.GetConfigMap(ctx, a.opts.Namespace, name)
		var why string
		switch {
		case err == nil:
			return true, nil
		case ctx.Err() != nil:
			return false, ctx.Err()
		case apierrors.IsNotFound(err):
			why = "it does not exist (yet)"
		case apierrors.IsForbidden(err):
			why = "the agents' Role does not allow reading it (yet)"
		default:
			why = "the API server cannot be reached"
		}
		if why != lastWhy {
			a.log.Info("Waiting for the revision's snapshot", "revision", rev, "snapshot", name, "why", why, "err", err)
			lastWhy = why
		}
		progress(fmt.Sprintf("waiting for snapshot %s of revision %s: %s; for %v so far", name, rev, why, time.Since(start).Round(time.Second)))
		return false, nil
	})
	return cm, err
}

// waitForImage waits until the code container has delivered the code of
// img into the code root, for up to ImageTimeout.
func (a *Agent) waitForImage(ctx context.Context, rev string, img v1alpha1.ImageCodeSource, progress func(string)) (string, error) {
	dir := ImageCodeDir(a.opts.CodeRoot, img.Reference, img.Path)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, a.opts.ImageTimeout)
	defer cancel()
	var lost error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		if _, err := os.Stat(dir); err == nil {
			return true, nil
		}
		p := a.pod.Load()
		state, found := codeContainerState(p)
		if p != nil && !found {
			lost = fmt.Errorf("revision %s takes its code from image %s, but this pod has no %s container: "+
				"pods created while their pool took its code from a ConfigMap have none; recreate them (kubectl rollout restart)",
				rev, img.Reference, CodeContainer)
			return false, lost
		}
		progress(fmt.Sprintf("waiting for container %s to deliver image %s (path %s): %v of %v%s",
			CodeContainer, img.Reference, img.Path, time.Since(start).Truncate(5*time.Second), a.opts.ImageTimeout, state))
		return false, nil
	})
	switch {
	case err == nil:
		return dir, nil
	case lost != nil:
		return "", lost
	case ctx.Err() == context.DeadlineExceeded:
		state, _ := codeContainerState(a.pod.Load())
		return "", fmt.Errorf("revision %s: container %s did not deliver image %s (path %s) within %v%s",
			rev, CodeContainer, img.Reference, img.Path, a.opts.ImageTimeout, state)
	default:
		return "", err
	}
}

// codeContainerState describes the code container of pod p for a report
// ("" while it runs), and says whether p has one.
func codeContainerState(p *corev1.Pod) (string, bool) {
	if p == nil {
		return "", false
	}
	if !slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == CodeContainer }) {
		return "", false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != CodeContainer {
			continue
		}
		switch {
		case cs.State.Waiting != nil:
			s := fmt.Sprintf("; the container is waiting: %s", cs.State.Waiting.Reason)
			if m := cs.State.Waiting.Message; m != "" {
				s += ": " + m
			}
			if t := cs.LastTerminationState.Terminated; t != nil && t.Message != "" {
				s += "; it last exited with: " + strings.TrimSpace(t.Message)
			}
			return s, true
		case cs.State.Terminated != nil:
			return fmt.Sprintf("; the container exited (%s, code %d): %s", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode, strings.TrimSpace(cs.State.Terminated.Message)), true
		}
	}
	return "", true
}

// runningRecord is what the agent keeps in its code root of the revision
// its workers run, to serve it again after a restart.
type runningRecord struct {
	Name string        `json:"name"`
	Spec revision.Spec `json:"spec"`
	Dir  string        `json:"dir"`
}

// runningFile is where the record is kept.
func (a *Agent) runningFile() string { return filepath.Join(a.opts.CodeRoot, "running.json") }

// saveRunning keeps rev as the revision the workers run, atomically.
func (a *Agent) saveRunning(rev Revision) error {
	data, err := json.Marshal(runningRecord(rev))
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(a.opts.CodeRoot, ".running-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), a.runningFile())
}

// loadRunning reads the revision the workers ran before a restart of the
// agent, if its code is still there.
func (a *Agent) loadRunning() (Revision, bool) {
	data, err := os.ReadFile(a.runningFile())
	if errors.Is(err, fs.ErrNotExist) {
		return Revision{}, false
	}
	var rec runningRecord
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if err == nil && rec.Name == "" {
		err = errors.New("it names no revision")
	}
	if err == nil {
		_, err = os.Stat(rec.Dir)
	}
	if err != nil {
		a.log.Info("Ignoring the record of the revision that ran before a restart", "file", a.runningFile(), "err", err)
		return Revision{}, false
	}
	return Revision(rec), true
}

// publisher writes the newest report to the pod's status annotation,
// retrying with backoff while the API server cannot be reached; a report
// that a newer one replaced is never written.
func (a *Agent) publisher(ctx context.Context) {
	var written v1alpha1.AgentStatus
	for {
		var st v1alpha1.AgentStatus
		select {
		case <-ctx.Done():
			return
		case st = <-a.publish:
		}
		backoff := newBackoff()
		for !st.Same(written) {
			err := a.patchStatus(ctx, st)
			if err == nil {
				written = st
				break
			}
			a.log.Info("Cannot publish the status yet, retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case st = <-a.publish: // retry with the newest report
			case <-time.After(backoff.Step()):
			}
		}
	}
}

func (a *Agent) patchStatus(ctx context.Context, st v1alpha1.AgentStatus) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{v1alpha1.StatusAnnotation: string(raw)}}})
	if err != nil {
		return err
	}
	return a.opts.Client.MergePatchPod(ctx, a.opts.Namespace, a.opts.PodName, patch)
}

// newBackoff is the agent's retry pace against the API server: from 200ms,
// doubling up to 10s, then every 10s (Step keeps returning the cap).
func newBackoff() wait.Backoff {
	return wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Steps: math.MaxInt32, Cap: 10 * time.Second, Jitter: 0.2}
}

// retry calls f with backoff until it is done or fails for good.
func retry(ctx context.Context, f func() (done bool, err error)) error {
	backoff := newBackoff()
	for {
		done, err := f()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff.Step()):
		}
	}
}

// replaceLatest puts v into a one-slot channel, dropping an older value.
func replaceLatest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
			select {
			case <-ch:
			default:
			}
		}
	}
}
