package pod

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
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
	// Client reaches the API server with the pod's own token.
	Client kubernetes.Interface
	// Namespace, PodName and Pool locate the pod and its pool's snapshots.
	Namespace, PodName, Pool string
	// CodeRoot is the directory that holds the revisions' code.
	CodeRoot string
	// NewEngine builds the engine for the first revision the pod runs.
	NewEngine func(first Revision) (Engine, error)
	// ImageTimeout bounds the wait for the code container to deliver a
	// code image (5 minutes).
	ImageTimeout time.Duration
	// SnapshotWait bounds how long a snapshot that is not found, or not
	// readable yet, is waited for before the revision fails (1 minute).
	SnapshotWait time.Duration
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

	// desired receives the pod's desired revision, newest only.
	desired chan string
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
	if opts.SnapshotWait <= 0 {
		opts.SnapshotWait = time.Minute
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
		desired: make(chan string, 1),
		publish: make(chan v1alpha1.AgentStatus, 1),
	}, nil
}

// Run follows the pod until ctx is done, then drains the workers and
// returns.
func (a *Agent) Run(ctx context.Context) error {
	prior, err := a.watchPod(ctx)
	if err != nil {
		return err
	}
	go a.publisher(ctx)

	// A revision this agent failed is never tried again: not after a
	// restart either, since its last report says so.
	failed := map[string]string{} // revision → why
	if prior.State == v1alpha1.AgentFailed && prior.Revision != "" {
		failed[prior.Revision] = prior.Message
	}

	var (
		engine   Engine
		engineCh <-chan v1alpha1.AgentStatus
		done     = make(chan error, 1)
		desired  string
		asked    string // the newest revision asked of the engine
		first    string // what the engine started with: non-reloadable groups run it
		last     v1alpha1.AgentStatus
	)
	for {
		select {
		case <-ctx.Done():
			if engine == nil {
				return nil
			}
			return <-done
		case err := <-done:
			return err
		case desired = <-a.desired:
		case st := <-engineCh:
			last = st
			if st.State == v1alpha1.AgentFailed {
				// The engine went back to what ran before; asking for that
				// revision again (a rollback) replaces nothing and has the
				// engine report Ready.
				failed[st.Revision] = st.Message
			}
			a.report(a.statusFor(desired, last, failed))
			continue
		}

		a.report(a.statusFor(desired, last, failed))
		target := desired
		if _, bad := failed[target]; bad {
			// Run what ran before it instead, or wait for a revision that
			// has not failed here.
			if engine != nil || prior.Running == "" {
				continue
			}
			target = prior.Running
		}
		if target == "" || target == asked {
			continue
		}
		rev, err := a.fetch(ctx, target)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			a.log.Error("Cannot load revision", "revision", target, "err", err)
			failed[target] = err.Error()
			a.report(a.statusFor(desired, last, failed))
			continue
		}
		asked = target
		if engine == nil {
			first = rev.Name
			if engine, err = a.opts.NewEngine(rev); err != nil {
				return fmt.Errorf("starting the workers of revision %s: %w", rev.Name, err)
			}
			var cancel func()
			engineCh, cancel = engine.Subscribe()
			defer cancel()
			go func() { done <- engine.Run(ctx) }()
		} else {
			engine.RequestReload(rev)
		}
		if err := PruneRevisions(a.opts.CodeRoot, a.opts.KeepRevisions, first, rev.Name, last.Running, last.Revision); err != nil {
			a.log.Info("Could not prune old revisions", "err", err)
		}
	}
}

// statusFor is the report for the pod: the engine's, except that a desired
// revision that failed here is reported Failed (with what runs instead)
// until the controller asks for another.
func (a *Agent) statusFor(desired string, engine v1alpha1.AgentStatus, failed map[string]string) v1alpha1.AgentStatus {
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

func (a *Agent) report(st v1alpha1.AgentStatus) {
	if st.Revision == "" && st.State == "" {
		return
	}
	replaceLatest(a.publish, st)
}

// watchPod starts an informer on the pod itself, feeds its desired revision
// to a.desired, and returns the last report the pod holds.
func (a *Agent) watchPod(ctx context.Context) (v1alpha1.AgentStatus, error) {
	factory := informers.NewSharedInformerFactoryWithOptions(a.opts.Client, 0,
		informers.WithNamespace(a.opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.opts.PodName).String()
		}))
	informer := factory.Core().V1().Pods().Informer()
	onPod := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			replaceLatest(a.desired, pod.Annotations[v1alpha1.DesiredRevisionAnnotation])
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onPod,
		UpdateFunc: func(_, obj any) { onPod(obj) },
	}); err != nil {
		return v1alpha1.AgentStatus{}, fmt.Errorf("watching pod %s/%s: %w", a.opts.Namespace, a.opts.PodName, err)
	}
	factory.Start(ctx.Done())
	a.log.Info("Waiting for the pod's annotations")
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return v1alpha1.AgentStatus{}, ctx.Err()
	}
	obj, ok, err := informer.GetStore().GetByKey(a.opts.Namespace + "/" + a.opts.PodName)
	if err != nil || !ok {
		return v1alpha1.AgentStatus{}, fmt.Errorf("pod %s/%s not found: POD_NAME and POD_NAMESPACE must name the agent's own pod", a.opts.Namespace, a.opts.PodName)
	}
	prior, err := v1alpha1.ParseAgentStatus(obj.(*corev1.Pod).Annotations[v1alpha1.StatusAnnotation])
	if err != nil {
		a.log.Info("Ignoring the pod's last report", "err", err)
	}
	if prior == nil {
		return v1alpha1.AgentStatus{}, nil
	}
	return *prior, nil
}

// fetch reads revision rev's snapshot and puts its code in place: the
// snapshot's files in a new revision directory, or, for a code image, the
// directory the code container delivers. Transient API errors are retried.
func (a *Agent) fetch(ctx context.Context, rev string) (Revision, error) {
	name := revision.SnapshotName(a.opts.Pool, rev)
	var cm *corev1.ConfigMap
	// The right to read a new snapshot reaches the agent's Role a moment
	// after the snapshot: until SnapshotWait has passed, not found and
	// forbidden are retried too.
	deadline := time.Now().Add(a.opts.SnapshotWait)
	err := retry(ctx, func() (bool, error) {
		var err error
		cm, err = a.opts.Client.CoreV1().ConfigMaps(a.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			return true, nil
		case apierrors.IsNotFound(err), apierrors.IsForbidden(err):
			if time.Now().Before(deadline) {
				a.log.Info("Snapshot not readable yet, retrying", "snapshot", name, "err", err)
				return false, nil
			}
			return false, fmt.Errorf("reading snapshot %s of revision %s: %w", name, rev, err)
		default:
			a.log.Info("API server unreachable, retrying", "snapshot", name, "err", err)
			return false, nil
		}
	})
	if err != nil {
		return Revision{}, err
	}
	spec, err := revision.SpecFrom(cm)
	if err != nil {
		return Revision{}, err
	}
	if spec.Image != nil {
		dir := ImageCodeDir(a.opts.CodeRoot, spec.Image.Reference)
		if err := a.waitForDir(ctx, dir); err != nil {
			return Revision{}, fmt.Errorf("revision %s: the code container has not delivered image %s into %s within %v: %w",
				rev, spec.Image.Reference, dir, a.opts.ImageTimeout, err)
		}
		return Revision{Name: rev, Spec: spec, Dir: dir}, nil
	}
	files := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		files[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		files[k] = v
	}
	dir, err := WriteRevision(a.opts.CodeRoot, rev, files)
	if err != nil {
		return Revision{}, err
	}
	return Revision{Name: rev, Spec: spec, Dir: dir}, nil
}

func (a *Agent) waitForDir(ctx context.Context, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, a.opts.ImageTimeout)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		_, err := os.Stat(dir)
		return err == nil, nil
	})
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
		for st != written {
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
	_, err = a.opts.Client.CoreV1().Pods(a.opts.Namespace).Patch(ctx, a.opts.PodName, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// ImageCodeDir is where the code container of image mode copies the code of
// image reference ref under the code root, and where the agent looks for
// it: one directory per reference, so a restarted code container never
// writes over code that workers run.
func ImageCodeDir(root, ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(root, "images", hex.EncodeToString(sum[:8]))
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
