package pod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
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
	Spec poolrevision.Spec
	// Dir is the revision's code directory.
	Dir string
	// Code says what the code is, apart from the groups: a hash of the
	// snapshot's files (or of its code image) and of the restart it asks
	// for. A revision of the same Code as one the workers run is given
	// that revision's Dir, and a change of its groups that leaves a
	// worker's spec alone but for the count keeps that worker
	// (supervisor.Target.Code).
	Code string
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
	if err := PruneRevisions(l.a.opts.CodeRoot, l.a.opts.KeepRevisions, l.inUseDirs()...); err != nil {
		l.a.log.Info("Could not prune old revisions", "err", err)
	}
	return nil
}

// inUse names the revisions whose code workers may run: the one the engine
// started with (groups that are not reloadable run it), the newest one
// asked, the one kept for a restart, and those of the engine's last report.
func (l *loop) inUse() []string {
	return []string{l.first, l.asked, l.saved, l.last.Running, l.last.Revision}
}

// inUseDirs names the directories under revisions/ that workers may run
// code in: those of the revisions in use, and the directories they were
// given when their code was already there (Revision.Code).
func (l *loop) inUseDirs() []string {
	var names []string
	for _, name := range l.inUse() {
		names = append(names, name)
		if rev, ok := l.known[name]; ok {
			names = append(names, filepath.Base(rev.Dir))
		}
	}
	return names
}

// codeDirs returns the code directories of the revisions in use, by their
// Code: a new revision of the same code runs in the same directory, so
// that the workers whose spec it leaves alone keep serving.
func (l *loop) codeDirs() map[string]string {
	dirs := map[string]string{}
	for _, name := range l.inUse() {
		if rev, ok := l.known[name]; ok && rev.Code != "" {
			dirs[rev.Code] = rev.Dir
		}
	}
	return dirs
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
	dirs := l.codeDirs()
	go func() {
		rev, err := l.a.fetch(fctx, target, dirs, func(message string) {
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
