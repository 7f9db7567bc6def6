package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/injection"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/rollout"
)

// WorkerPoolReconciler turns a WorkerPool's code and groups into revisions
// and rolls them over the selected pods through the pod protocol: it writes
// softreload.dev/desired-revision on a pod (and, in image mode, the image of
// its softreload-code container) and advances on the softreload.dev/status
// reports of the pods' agents. It keeps no state of its own: everything it
// decides from is in the pods' annotations and the pool's status.
type WorkerPoolReconciler struct {
	client   client.Client
	recorder events.EventRecorder
	clock    clock.PassiveClock
	// codeMeta holds the code ConfigMaps' metadata and reader reads from
	// the API server (SetupWithManager sets both; without them, client).
	codeMeta, reader client.Reader
	// mem is what the reconciler remembers between reconciles; see memory.
	mem *memory
	// pods reads a pool's cached pods (SetupWithManager sets its index
	// when the cache has one).
	pods poolPods
	// evictions are the pod evictions not yet seen in a status (pod
	// replacement).
	evictions evictionMemory
}

var _ reconcile.Reconciler = (*WorkerPoolReconciler)(nil)

// NewWorkerPoolReconciler returns a reconciler that reads and writes through
// c (a cached client: it remembers its own writes until the cache shows
// them), records events with recorder and tells time with clk.
func NewWorkerPoolReconciler(c client.Client, recorder events.EventRecorder, clk clock.PassiveClock) *WorkerPoolReconciler {
	return &WorkerPoolReconciler{client: c, codeMeta: c, reader: c, recorder: recorder, clock: clk, mem: newMemory(), pods: poolPods{client: c}}
}

// +kubebuilder:rbac:groups=workers.softreload.dev,resources=workerpools,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=workers.softreload.dev,resources=workerpools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile makes the pool's revision, moves the next pods towards it within
// the budget, prunes old snapshots, and writes the status once, at the end.
func (r *WorkerPoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, retErr error) {
	pool := &workersv1alpha1.WorkerPool{}
	if err := r.client.Get(ctx, req.NamespacedName, pool); err != nil {
		if apierrors.IsNotFound(err) {
			forgetPoolMetrics(req.Namespace, req.Name)
			r.mem.forget(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("getting WorkerPool %s: %w", req.NamespacedName, err)
	}
	pool = r.mem.latest(pool)
	if !pool.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	s := &scope{pool: pool, before: pool.DeepCopy(), now: metav1.NewTime(r.clock.Now())}
	defer func() {
		if err := r.patchStatus(ctx, s); err != nil {
			retErr = errors.Join(retErr, err)
		}
		if retErr == nil && s.rollbackSeen {
			retErr = r.clearRollbackRequest(ctx, s.pool)
		}
		if retErr == nil {
			res = s.result()
		}
	}()

	// A problem the user must fix (s.blocked) leaves the pods where they are,
	// shows in the status, and its error retries the reconcile.
	revErr := r.reconcileRevision(ctx, s)
	if revErr != nil && s.blocked == nil {
		return ctrl.Result{}, revErr
	}
	return ctrl.Result{}, errors.Join(revErr, r.reconcileRollout(ctx, s))
}

// reconcileRollout turns a pending rollback into the target, moves the pods
// and prunes the snapshots.
func (r *WorkerPoolReconciler) reconcileRollout(ctx context.Context, s *scope) error {
	if err := r.reconcileRollbackRequest(ctx, s); err != nil {
		return err
	}
	if err := r.reconcilePods(ctx, s); err != nil {
		return err
	}
	if err := r.reconcileReplacement(ctx, s); err != nil {
		return err
	}
	return r.reconcileSnapshots(ctx, s)
}

// scope is what one reconcile of one pool knows.
type scope struct {
	pool   *workersv1alpha1.WorkerPool
	before *workersv1alpha1.WorkerPool
	now    metav1.Time

	// spec and target are the revision the pool makes now; target is ""
	// when the revision cannot be made, and blocked says why.
	spec    poolrevision.Spec
	target  string
	source  string
	cause   string
	blocked *problem
	// accessWait, when set, says which pods wait to be told a revision
	// until their agents may read its snapshot.
	accessWait string
	// rollbackSeen says the pool carries a rollback-to request, which this
	// reconcile records in the status and then removes.
	rollbackSeen bool
	// progressWait, when set, says the status's new progress waits that
	// long to be written (progressWriteInterval).
	progressWait time.Duration
	// moreToTell says the plan moved more pods than one reconcile tells
	// (maxTellsPerReconcile): the next reconcile, at once, tells the rest.
	moreToTell bool

	// pods are the governed pods that are not being deleted, by name;
	// terminating those that are.
	pods        map[string]*corev1.Pod
	terminating []*corev1.Pod
	// replace is what pod replacement found and did (workerpool_replace.go).
	replace *replaceState
	// planned is set once plan holds the plan for the pods as they are,
	// planned from podStates: each pod of pods with its desired revision
	// and report, read once.
	planned   bool
	plan      rollout.Plan
	podStates []rollout.Pod
}

// result asks to be called again when the rollout's progress deadline runs
// out, at once when a failure was just recorded and the rollback waits or
// the plan moved more pods than one reconcile tells, and
// soon when pods wait for their agents' access (the Role's change wakes the
// pool too; this covers the authorizer seeing it a moment later). It reads
// the status as computed.
func (s *scope) result() ctrl.Result {
	if s.plan.Failure != nil || s.moreToTell {
		return ctrl.Result{RequeueAfter: time.Millisecond}
	}
	res := ctrl.Result{}
	if left, ok := deadlineLeft(s.pool, s.now.Time); ok && left > 0 {
		res.RequeueAfter = left
	}
	if s.accessWait != "" && (res.RequeueAfter == 0 || res.RequeueAfter > accessRetry) {
		res.RequeueAfter = accessRetry
	}
	if retry := s.replaceRetry(); retry > 0 && (res.RequeueAfter == 0 || res.RequeueAfter > retry) {
		res.RequeueAfter = retry // an eviction refused for now
	}
	if s.progressWait > 0 && (res.RequeueAfter == 0 || res.RequeueAfter > s.progressWait) {
		res.RequeueAfter = s.progressWait // the progress not yet written
	}
	if res.RequeueAfter == 0 || res.RequeueAfter > strayCheckPeriod {
		res.RequeueAfter = strayCheckPeriod // the pods of others are looked for, not watched
	}
	return res
}

// reconcileRevision computes the pool's revision from its code and spec and
// makes sure its snapshot exists.
func (r *WorkerPoolReconciler) reconcileRevision(ctx context.Context, s *scope) error {
	s.spec = poolrevision.SpecOf(s.pool)
	// code is nil when the revision is remembered and its snapshot exists.
	code := &poolrevision.Code{}
	if s.pool.Spec.Code.ConfigMapRef != nil {
		var err error
		if code, err = r.reconcileCode(ctx, s); err != nil || s.blocked != nil {
			return err
		}
	} else {
		if image := s.pool.Spec.Code.Image; image != nil {
			s.source = "image " + image.Reference
		}
		s.target = poolrevision.Hash(s.spec, *code)
	}

	if err := r.ensureSnapshot(ctx, s, code); err != nil {
		if s.blocked != nil {
			s.target = ""
		}
		return err
	}
	if h := s.pool.Status.History; len(h) == 0 || h[0].Revision != s.target {
		s.cause = r.causeOf(ctx, s)
	}
	return nil
}

// ensureSnapshot creates the snapshot of the target revision unless it
// exists. What the user must fix (a ConfigMap in the snapshot's place, a
// snapshot the API server refuses) is also recorded in s.blocked. code is
// nil only when the snapshot was just seen in the cache.
func (r *WorkerPoolReconciler) ensureSnapshot(ctx context.Context, s *scope, code *poolrevision.Code) error {
	name := poolrevision.SnapshotName(s.pool.Name, s.target)
	key := types.NamespacedName{Namespace: s.pool.Namespace, Name: name}
	existing := &corev1.ConfigMap{}
	err := r.client.Get(ctx, key, existing)
	if err == nil {
		return r.checkSnapshot(s, existing)
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("getting snapshot %s: %w", name, err)
	}
	if code == nil {
		return fmt.Errorf("snapshot %s of revision %s is gone from the cache: making it again", name, s.target)
	}
	snapshot, err := poolrevision.NewSnapshot(s.pool, s.target, s.spec, *code)
	if err != nil {
		return err
	}
	err = r.client.Create(ctx, snapshot)
	if apierrors.IsAlreadyExists(err) {
		// The cache holds snapshots alone, and may lag: ask the API server
		// what holds the name.
		if err := r.reader.Get(ctx, key, existing); err != nil {
			return fmt.Errorf("getting ConfigMap %s, in the place of the snapshot of revision %s: %w", name, s.target, err)
		}
		return r.checkSnapshot(s, existing)
	}
	if err != nil {
		s.blocked = snapshotRefused(name, s.target, s.pool.Spec.Code.ConfigMapRef, err)
		return fmt.Errorf("creating snapshot %s of revision %s: %w", name, s.target, err)
	}
	ctrl.LoggerFrom(ctx).Info("Created revision snapshot", "revision", s.target, "snapshot", klog.KObj(snapshot))
	return nil
}

// checkSnapshot says whether cm, which has the name of the target's
// snapshot, is that snapshot.
func (r *WorkerPoolReconciler) checkSnapshot(s *scope, cm *corev1.ConfigMap) error {
	if cm.Labels[workersv1alpha1.PoolNameLabel] != s.pool.Name || cm.Labels[workersv1alpha1.RevisionLabel] != s.target {
		s.blocked = snapshotNameTaken(cm.Name, s.pool.Name, s.target)
		return errors.New(s.blocked.message)
	}
	return nil
}

// causeOf says why the target revision differs from the last one.
func (r *WorkerPoolReconciler) causeOf(ctx context.Context, s *scope) string {
	h := s.pool.Status.History
	if len(h) == 0 {
		return CauseCreated
	}
	for _, rec := range h[1:] {
		if rec.Revision == s.target {
			return CauseRollback
		}
	}
	prev, err := r.specOf(ctx, s.pool, h[0].Revision)
	if err != nil {
		return CauseCodeChanged
	}
	return causeBetween(prev, s.spec)
}

// specOf reads the revision spec of rev from its snapshot.
func (r *WorkerPoolReconciler) specOf(ctx context.Context, pool *workersv1alpha1.WorkerPool, rev string) (poolrevision.Spec, error) {
	cm := &corev1.ConfigMap{}
	name := poolrevision.SnapshotName(pool.Name, rev)
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: name}, cm); err != nil {
		return poolrevision.Spec{}, fmt.Errorf("getting snapshot %s of revision %s: %w", name, rev, err)
	}
	return poolrevision.SpecFrom(cm)
}

// reconcilePods plans the rollout from the pods' annotations and tells the
// pods the plan picked their revision.
func (r *WorkerPoolReconciler) reconcilePods(ctx context.Context, s *scope) error {
	selector, err := metav1.LabelSelectorAsSelector(&s.pool.Spec.Selector)
	if err != nil {
		// Nothing to retry: the fix is a spec change, which is watched.
		s.blocked = invalidSelector(err)
		return nil
	}
	// The pods labelled for the pool, through the cache's index (not every
	// pod of the namespace), are the cache's own: read them, never change
	// them (applyExpectations replaces a pod by a copy).
	pods, err := r.pods.get(ctx, s.pool.Namespace, s.pool.Name, selector)
	if err != nil {
		return fmt.Errorf("listing the pods of WorkerPool %s: %w", s.pool.Name, err)
	}
	r.mem.applyExpectations(client.ObjectKeyFromObject(s.pool), pods)
	s.pods = make(map[string]*corev1.Pod, len(pods))
	others, err := r.podsOfOthers(ctx, s, selector)
	if err != nil {
		return err
	}
	setSelectorOverlapCondition(&s.pool.Status.Conditions, notGovernedOf(s.pool, others), s.pool.Generation, s.now)
	in := rollout.Input{
		Target:   s.target,
		Stable:   s.pool.Status.CurrentRevision,
		Paused:   s.pool.Spec.Paused,
		Halted:   halted(s.pool.Status.History, s.target),
		Rollback: s.pool.Spec.Strategy.Rollback,
		Pods:     make([]rollout.Pod, 0, len(pods)),
	}
	for _, pod := range pods {
		if !governs(s.pool, pod) {
			continue
		}
		if !pod.DeletionTimestamp.IsZero() {
			s.terminating = append(s.terminating, pod)
			continue
		}
		s.pods[pod.Name] = pod
		in.Pods = append(in.Pods, rollout.Pod{
			Name:    pod.Name,
			Desired: pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation],
			Report:  reportOf(pod),
		})
	}
	in.MaxUnavailable = rollout.ResolveMaxUnavailable(s.pool.Spec.Strategy.MaxUnavailable, len(in.Pods))
	s.plan, s.planned, s.podStates = rollout.Compute(in), true, in.Pods
	if s.plan.Failure != nil {
		return nil // recorded in the status first; the rollback follows
	}
	if s.plan.Actions, err = r.readableActions(ctx, s); err != nil {
		return err
	}
	if len(s.plan.Actions) > maxTellsPerReconcile {
		s.plan.Actions, s.moreToTell = s.plan.Actions[:maxTellsPerReconcile], true
	}

	images := map[string]*workersv1alpha1.ImageCodeSource{s.target: s.spec.Image}
	for _, a := range s.plan.Actions {
		if _, ok := images[a.Revision]; !ok {
			spec, err := r.specOf(ctx, s.pool, a.Revision)
			if err != nil {
				return fmt.Errorf("cannot send pod %s to revision %s: %w", a.Pod, a.Revision, err)
			}
			images[a.Revision] = spec.Image
		}
	}
	// The pods are independent: patch a few at a time.
	// Each pod told is remembered until the cache shows it (see memory).
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, maxParallelPatches)
	)
	for _, a := range s.plan.Actions {
		pod := s.pods[a.Pod]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			version, err := r.sendRevision(ctx, pod, a.Revision, images[a.Revision])
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			if version != "" {
				r.mem.expect(client.ObjectKeyFromObject(s.pool), pod.UID, version, a.Revision)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// maxParallelPatches is how many pods one reconcile patches at once.
const maxParallelPatches = 64

// maxTellsPerReconcile is the most pods one reconcile tells a revision, in
// the plan's order; the next reconcile, called at once, plans and tells the
// rest. Pods without a revision (created without the webhook) or a budget
// of thousands would otherwise have one reconcile patch thousands of pods,
// remember them all until the cache shows them, and keep the pool's status
// until the last patch returned; the agents' reports then come in one burst,
// which set the manager's peak memory.
const maxTellsPerReconcile = 512

// sendRevision tells pod to run rev, and returns the pod's resourceVersion
// after the write ("" if the pod is gone): one patch that sets the desired-revision
// annotation and, in image mode, the image of the code container with the
// annotations that tell that container which image and path it delivers.
// One write, so that the kubelet, which starts the container again for its
// new image, reads the annotations of that same image.
func (r *WorkerPoolReconciler) sendRevision(ctx context.Context, pod *corev1.Pod, rev string, image *workersv1alpha1.ImageCodeSource) (string, error) {
	annotations := map[string]string{workersv1alpha1.DesiredRevisionAnnotation: rev}
	patch := map[string]any{"metadata": map[string]any{"annotations": annotations}}
	if image != nil {
		for _, c := range pod.Spec.Containers {
			if c.Name != injection.CodeContainer {
				continue
			}
			annotations[workersv1alpha1.CodeImageAnnotation] = image.Reference
			annotations[workersv1alpha1.CodePathAnnotation] = image.Path
			if c.Image != image.Reference {
				patch["spec"] = map[string]any{"containers": []map[string]string{{"name": c.Name, "image": image.Reference}}}
			}
		}
	}
	body, err := json.Marshal(patch)
	if err != nil {
		return "", fmt.Errorf("encoding the patch of pod %s: %w", pod.Name, err)
	}
	// The pod is the cache's: patch a copy of its name, and read back its
	// metadata alone.
	patched := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name}}
	patched.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	if err := r.client.Patch(ctx, patched, client.RawPatch(types.StrategicMergePatchType, body)); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil // gone: it no longer counts
		}
		return "", fmt.Errorf("sending revision %s to pod %s: %w", rev, pod.Name, err)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Sent revision", "pod", klog.KObj(pod), "revision", rev)
	return patched.ResourceVersion, nil
}

// reconcileSnapshots deletes the snapshots beyond revisionHistoryLimit that
// no pod runs or is told to run.
func (r *WorkerPoolReconciler) reconcileSnapshots(ctx context.Context, s *scope) error {
	list := &corev1.ConfigMapList{}
	if err := r.client.List(ctx, list, client.InNamespace(s.pool.Namespace),
		client.MatchingLabels{workersv1alpha1.PoolNameLabel: s.pool.Name}); err != nil {
		return fmt.Errorf("listing the snapshots of WorkerPool %s: %w", s.pool.Name, err)
	}
	// What the pods run or are told, what this reconcile sends, the target,
	// and, until the target is everywhere, the stable revision a rollback
	// would go to.
	inUse := map[string]bool{s.target: true}
	if !s.plan.Complete {
		inUse[s.pool.Status.CurrentRevision] = true
	}
	if s.target == "" {
		inUse[s.pool.Status.UpdateRevision] = true
	}
	for _, pod := range s.podStates {
		inUse[pod.Desired] = true
		if rep := pod.Report; rep != nil {
			inUse[rep.Revision], inUse[rep.Running] = true, true
		}
	}
	for _, a := range s.plan.Actions {
		inUse[a.Revision] = true
	}
	var history []string
	for _, rec := range s.pool.Status.History {
		history = append(history, rec.Revision)
	}
	limit := 10
	if l := s.pool.Spec.RevisionHistoryLimit; l != nil {
		limit = int(*l)
	}
	for _, name := range poolrevision.Prune(list.Items, inUse, history, limit) {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: s.pool.Namespace, Name: name}}
		if err := r.client.Delete(ctx, cm); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting old snapshot %s: %w", name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted old revision snapshot", "snapshot", klog.KObj(cm))
	}
	return nil
}

// reportOf reads a pod's agent report; nil when there is none or it does not
// parse (the pod then counts as not reported). The report is shared: it
// must not be changed.
func reportOf(pod *corev1.Pod) *workersv1alpha1.AgentStatus {
	return reports.parse(pod.Annotations[workersv1alpha1.StatusAnnotation])
}

// patchStatus writes the status computed from the scope, if it changed,
// and then tells of what changed in events and metrics.
func (r *WorkerPoolReconciler) patchStatus(ctx context.Context, s *scope) error {
	switch {
	case s.planned:
		computeStatus(s)
		setPodMetrics(s.pool, s.plan.Counts)
	case s.blocked != nil:
		computeBlockedStatus(s)
	default:
		return nil // an error before planning that retrying may cure
	}
	key, now := client.ObjectKeyFromObject(s.pool), time.Now()
	r.mem.setRolling(key, s.pool.Status)
	if equalStatus(s.before.Status, s.pool.Status) {
		return nil
	}
	if progressOnly(s.before.Status, s.pool.Status) {
		if s.progressWait = r.mem.progressWait(key, now); s.progressWait > 0 {
			return nil // written once the interval is over (result)
		}
	}
	if err := r.client.Status().Patch(ctx, s.pool, client.MergeFromWithOptions(s.before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patching the status of WorkerPool %s: %w", s.pool.Name, err)
	}
	// The next reconcile plans from this status until the cache shows it.
	r.mem.wrote(s.pool, s.before.ResourceVersion)
	r.mem.wroteStatusAt(key, now)
	r.announce(s.before, s.pool, s.now.Time)
	return nil
}
