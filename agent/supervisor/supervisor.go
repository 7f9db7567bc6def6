package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/utils/clock"

	"github.com/softreload/softreload/api/v1alpha1"
)

// Environment variables every worker gets (the worker contract).
const (
	EnvGroup    = "SOFTRELOAD_GROUP"
	EnvWorkerID = "SOFTRELOAD_WORKER_ID"
	EnvRevision = "SOFTRELOAD_REVISION"
	EnvCodeDir  = "SOFTRELOAD_CODE_DIR"
)

// ErrStopped is returned by calls made after the supervisor stopped, and by
// a Reload that the stop interrupted.
var ErrStopped = errors.New("supervisor: stopped")

// Options configures a Supervisor. Zero values mean the defaults.
type Options struct {
	// Groups are the worker groups, with defaults set and validated.
	Groups []v1alpha1.WorkerGroup
	// Strategy is how workers are replaced (replacement, maxSurge).
	Strategy v1alpha1.RolloutStrategy
	// Listeners holds, per group name, the bound sockets in listen order.
	Listeners map[string][]*os.File
	// Revision and CodeDir are what the workers start with.
	Revision string
	CodeDir  string

	// OS starts processes. Required.
	OS OS
	// Clock drives every timer; the real clock by default.
	Clock clock.WithDelayedExecution
	// BackoffInitial and BackoffMax bound the delay before a crashed worker
	// is restarted: it doubles from BackoffInitial (1s) up to BackoffMax
	// (30s), and starts again from BackoffInitial once a worker has run for
	// BackoffReset (10s).
	BackoffInitial time.Duration
	BackoffMax     time.Duration
	BackoffReset   time.Duration
	// Recorder is told about reloads and restarts (metrics); optional.
	Recorder Recorder
	// Logger logs what the supervisor does; slog.Default() by default.
	Logger *slog.Logger
}

// Recorder is told what happened, for metrics.
type Recorder interface {
	ReloadFinished(result ReloadResult, d time.Duration)
	WorkerRestarted(group string)
	// WorkerStopped is told about a worker that was sent its stop signal
	// and exited: how long it took from the signal to its exit, and
	// whether its stop timeout ran out and it was killed.
	WorkerStopped(group string, drain time.Duration, killed bool)
}

// ReloadResult is how a reload ended.
type ReloadResult string

// How a reload ended.
const (
	// ReloadSucceeded: every reloadable worker runs the new revision.
	ReloadSucceeded ReloadResult = "succeeded"
	// ReloadFailed: a new worker failed; the workers went back.
	ReloadFailed ReloadResult = "failed"
	// ReloadAborted: the supervisor stopped during the reload.
	ReloadAborted ReloadResult = "aborted"
)

// WorkerState is the state of one worker process.
type WorkerState string

const (
	// WorkerStarting is a worker that runs and is not ready yet.
	WorkerStarting WorkerState = "Starting"
	// WorkerReady is a worker that is ready and serves.
	WorkerReady WorkerState = "Ready"
	// WorkerStopping is a worker asked to stop that has not exited yet.
	WorkerStopping WorkerState = "Stopping"
	// WorkerBackoff is a crashed worker waiting to be restarted.
	WorkerBackoff WorkerState = "Backoff"
	// WorkerExited is a worker that exited and is not restarted.
	WorkerExited WorkerState = "Exited"
)

// WorkerStatus describes one worker.
type WorkerStatus struct {
	Group    string      `json:"group"`
	Slot     int         `json:"slot"`
	PID      int         `json:"pid"`
	Revision string      `json:"revision"`
	State    WorkerState `json:"state"`
	// Started is when the process started; Since when it entered State.
	Started    time.Time `json:"started"`
	Since      time.Time `json:"since"`
	Restarts   int32     `json:"restarts"`
	Reloadable bool      `json:"reloadable"`
	// Next is true for a worker started by a reload that has not taken
	// its slot over yet.
	Next bool `json:"next,omitempty"`
	// MemoryBytes is the resident memory, when the caller filled it in.
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
}

// recentDrains is how many of a group's last drains GroupStatus's slowest
// drain is taken from.
const recentDrains = 10

// GroupStatus says how a group's workers stopped since the agent started:
// each worker told to stop (replaced by a reload, or drained at shutdown)
// counts once it exited. A worker that honours the stop contract drains
// in a short time and is never killed.
type GroupStatus struct {
	Name string `json:"name"`
	// Stopped counts the workers that were sent their stop signal and
	// exited.
	Stopped int64 `json:"stopped"`
	// Killed counts those of them that were still running when their stop
	// timeout ran out, and were killed (SIGKILL).
	Killed int64 `json:"killed"`
	// LastDrainSeconds is how long the last of them took from its stop
	// signal to its exit; SlowestDrainSeconds the longest of the last 10.
	// Both are 0 while Stopped is 0.
	LastDrainSeconds    float64 `json:"lastDrainSeconds"`
	SlowestDrainSeconds float64 `json:"slowestDrainSeconds"`
}

// Status is a snapshot of the supervisor.
type Status struct {
	// Agent is the report a controller reads (revision, state, counts).
	Agent v1alpha1.AgentStatus `json:"agent"`
	// Workers lists every worker process, by group and slot.
	Workers []WorkerStatus `json:"workers"`
	// Groups says, per group in the config's order, how its workers
	// drained when they were stopped. It is the agent's own and not part
	// of the report a controller reads, which stays small.
	Groups []GroupStatus `json:"groups"`
}

// Killed is how many workers of every group were killed because their stop
// timeout ran out.
func (s Status) Killed() int64 {
	var n int64
	for _, g := range s.Groups {
		n += g.Killed
	}
	return n
}

// PIDs returns the pids of a group's serving workers, by slot.
func (s Status) PIDs(group string) []int {
	var out []int
	for _, w := range s.Workers {
		if w.Group == group && !w.Next {
			out = append(out, w.PID)
		}
	}
	return out
}

// Supervisor runs worker groups and reloads them. Create it with New, start
// it with Run.
type Supervisor struct {
	opts   Options
	log    *slog.Logger
	clock  clock.WithDelayedExecution
	events chan event
	done   chan struct{} // closed when Run returns
	stop   sync.Once

	snapshot atomic.Pointer[Status]
	subsMu   sync.Mutex
	subs     map[chan v1alpha1.AgentStatus]struct{}

	// Owned by the Run goroutine.
	groups   []*group
	running  target // what the workers run when no reload is in progress
	current  *reloadRequest
	pending  *reloadRequest
	state    v1alpha1.AgentState
	message  string
	failed   string // the revision that failed, while state is Failed
	stopping bool
	nextID   uint64
	// live holds every worker started and not yet exited, in start order:
	// those serving a slot, those a reload brings up, and those replaced
	// or stopped that have not exited yet. The drain waits for all of them.
	live []*worker
}

// target is a revision to run: its name, its code directory and, when it
// changes them, its groups by name (nil: the groups the agent started with).
type target struct {
	revision, dir string
	groups        map[string]*v1alpha1.WorkerGroup
}

// same reports whether t and o are the same revision.
func (t target) same(o target) bool { return t.revision == o.revision && t.dir == o.dir }

// Target is a revision to reload to.
type Target struct {
	// Revision names the revision; CodeDir holds its code.
	Revision string
	CodeDir  string
	// Groups are the revision's groups, when it changes them; nil keeps the
	// groups of the running revision. A group's command, args, env,
	// readiness, stopSignal and stopTimeoutSeconds may change; its name,
	// count, listen and reloadable may not (they need a restart of the
	// agent), and groups may not be added or removed: such a revision fails
	// to load. Groups that are not reloadable keep their workers and spec.
	Groups []v1alpha1.WorkerGroup
}

func (t Target) internal() target {
	to := target{revision: t.Revision, dir: t.CodeDir}
	if t.Groups != nil {
		to.groups = map[string]*v1alpha1.WorkerGroup{}
		for _, g := range t.Groups {
			g := *g.DeepCopy()
			v1alpha1.SetGroupDefaults(&g)
			to.groups[g.Name] = &g
		}
	}
	return to
}

type group struct {
	spec       v1alpha1.WorkerGroup
	files      []*os.File
	names      []string
	reloadable bool
	slots      []*slot
	drains     drains
}

// drains are the stops of a group's workers, for GroupStatus.
type drains struct {
	stopped, killed int64
	recent          []time.Duration // the last recentDrains, oldest first
}

// add counts the drain of one worker.
func (d *drains) add(took time.Duration, killed bool) {
	d.stopped++
	if killed {
		d.killed++
	}
	if len(d.recent) == recentDrains {
		d.recent = d.recent[1:]
	}
	d.recent = append(d.recent, took)
}

// status is d as the group's GroupStatus.
func (d *drains) status(name string) GroupStatus {
	gs := GroupStatus{Name: name, Stopped: d.stopped, Killed: d.killed}
	if n := len(d.recent); n > 0 {
		gs.LastDrainSeconds = d.recent[n-1].Seconds()
		gs.SlowestDrainSeconds = slices.Max(d.recent).Seconds()
	}
	return gs
}

type slot struct {
	index    int
	cur      *worker // the worker serving this slot
	next     *worker // a worker a reload is bringing up
	restarts int32
	failures int // consecutive crashes, for backoff
}

type worker struct {
	id        uint64
	g         *group
	s         *slot
	spec      *v1alpha1.WorkerGroup // what it was started with
	rev       target
	proc      Process
	state     WorkerState
	started   time.Time
	since     time.Time
	stopping  bool
	stopSent  time.Time // when it was sent its stop signal
	killed    bool      // its stop timeout ran out: it was sent SIGKILL
	exited    bool
	exitErr   error
	failure   string // why it did not become ready
	candidate bool
	timers    []clock.Timer
}

func (w *worker) name() string { return fmt.Sprintf("%s/%d", w.g.spec.Name, w.s.index) }

type event any

type (
	evReady         struct{ w *worker }
	evExited        struct{ w *worker }
	evDelayElapsed  struct{ w *worker }
	evReadyDeadline struct{ w *worker }
	evKill          struct{ w *worker }
	evRestart       struct{ w *worker }
	evStop          struct{}
)

type reloadRequest struct {
	to      target
	waiters []chan reloadReply
}

type reloadReply struct {
	status v1alpha1.AgentStatus
	err    error
}

// New checks opts and returns a Supervisor that is not running yet.
func New(opts Options) (*Supervisor, error) {
	if opts.OS == nil {
		return nil, errors.New("supervisor: Options.OS is required")
	}
	if len(opts.Groups) == 0 {
		return nil, errors.New("supervisor: no groups to run")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.BackoffInitial <= 0 {
		opts.BackoffInitial = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 30 * time.Second
	}
	if opts.BackoffReset <= 0 {
		opts.BackoffReset = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	v1alpha1.SetStrategyDefaults(&opts.Strategy)
	s := &Supervisor{
		opts:    opts,
		log:     opts.Logger,
		clock:   opts.Clock,
		events:  make(chan event, 64),
		done:    make(chan struct{}),
		subs:    map[chan v1alpha1.AgentStatus]struct{}{},
		running: target{revision: opts.Revision, dir: opts.CodeDir},
		state:   v1alpha1.AgentReloading,
	}
	for _, spec := range opts.Groups {
		v1alpha1.SetGroupDefaults(&spec)
		g := &group{spec: spec, files: opts.Listeners[spec.Name], reloadable: *spec.Reloadable}
		for i := range g.files {
			g.names = append(g.names, spec.Name+"-"+strconv.Itoa(i))
		}
		for i := 0; i < int(spec.Count); i++ {
			g.slots = append(g.slots, &slot{index: i})
		}
		s.groups = append(s.groups, g)
	}
	s.publish()
	return s, nil
}

// Run starts every worker and supervises them until Stop is called or ctx
// is done; then it drains every worker (stop signal, stop timeout, SIGKILL)
// and returns. It returns nil after a drain.
func (s *Supervisor) Run(ctx context.Context) error {
	defer close(s.done)
	stopCtx := context.AfterFunc(ctx, s.Stop)
	defer stopCtx()

	initial := &reloadRequest{to: s.running}
	s.current = initial
	for _, g := range s.groups {
		for _, sl := range g.slots {
			sl.cur = s.start(g, sl, s.running, false)
		}
	}
	s.publish()
	// A reload asked before every first worker is ready need not wait for
	// them: it replaces them anyway.
	if err := s.await(func() bool { return s.allReady() || s.pending != nil }); err == nil {
		s.current = nil
		if s.pending == nil {
			s.state = v1alpha1.AgentReady
		}
		s.publish()
		initial.reply(s.agentStatus(), nil)
	}
	for !s.stopping {
		if s.pending != nil {
			req := s.pending
			s.pending = nil
			s.reload(req)
			continue
		}
		s.handle(<-s.events)
	}
	s.drain()
	for _, req := range []*reloadRequest{s.current, s.pending} {
		if req != nil {
			req.reply(s.agentStatus(), ErrStopped)
		}
	}
	s.current, s.pending = nil, nil
	s.publish()
	return nil
}

// Stop asks the supervisor to drain its workers and return from Run. It
// does not wait; Done is closed when Run returned.
func (s *Supervisor) Stop() {
	s.stop.Do(func() { s.send(evStop{}) })
}

// Done is closed when Run has returned.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// RequestReload asks for a reload to revision, whose code is in codeDir,
// and returns at once. A reload asked while one is in progress runs after
// it, to the newest revision asked; asking again for the revision being
// loaded changes nothing.
func (s *Supervisor) RequestReload(revision, codeDir string) {
	s.RequestReloadTo(Target{Revision: revision, CodeDir: codeDir})
}

// RequestReloadTo is RequestReload for a revision that may change the
// groups.
func (s *Supervisor) RequestReloadTo(t Target) {
	s.send(&reloadRequest{to: t.internal()})
}

// Reload asks for a reload like RequestReload and waits until it is over.
// It returns the agent's status at the end, and an error when the reload
// failed (the workers then run the previous revision), when the supervisor
// stopped or when ctx is done. If a newer reload was asked meanwhile, the
// result is that of the newer one.
func (s *Supervisor) Reload(ctx context.Context, revision, codeDir string) (v1alpha1.AgentStatus, error) {
	return s.ReloadTo(ctx, Target{Revision: revision, CodeDir: codeDir})
}

// ReloadTo is Reload for a revision that may change the groups.
func (s *Supervisor) ReloadTo(ctx context.Context, t Target) (v1alpha1.AgentStatus, error) {
	reply := make(chan reloadReply, 1)
	if !s.send(&reloadRequest{to: t.internal(), waiters: []chan reloadReply{reply}}) {
		return s.Status().Agent, ErrStopped
	}
	select {
	case r := <-reply:
		return r.status, r.err
	case <-s.done:
		select {
		case r := <-reply:
			return r.status, r.err
		default:
			return s.Status().Agent, ErrStopped
		}
	case <-ctx.Done():
		return s.Status().Agent, ctx.Err()
	}
}

// Status returns the latest snapshot. It never blocks.
func (s *Supervisor) Status() Status { return *s.snapshot.Load() }

// Subscribe returns a channel that receives the agent's status each time
// it changes, starting with the current one. Only the newest value is kept
// for a slow reader. cancel ends the subscription.
func (s *Supervisor) Subscribe() (updates <-chan v1alpha1.AgentStatus, cancel func()) {
	ch := make(chan v1alpha1.AgentStatus, 1)
	s.subsMu.Lock()
	s.subs[ch] = struct{}{}
	ch <- s.Status().Agent
	s.subsMu.Unlock()
	return ch, func() {
		s.subsMu.Lock()
		delete(s.subs, ch)
		s.subsMu.Unlock()
	}
}

// send hands ev to the Run goroutine; false once Run has returned.
func (s *Supervisor) send(ev event) bool {
	select {
	case <-s.done:
		return false
	default:
	}
	select {
	case s.events <- ev:
		return true
	case <-s.done:
		return false
	}
}

func (r *reloadRequest) reply(st v1alpha1.AgentStatus, err error) {
	for _, w := range r.waiters {
		w <- reloadReply{st, err}
	}
	r.waiters = nil
}

// await handles events until cond holds. It returns ErrStopped if a stop
// was asked meanwhile.
func (s *Supervisor) await(cond func() bool) error {
	for !cond() {
		if s.stopping {
			return ErrStopped
		}
		s.handle(<-s.events)
	}
	if s.stopping {
		return ErrStopped
	}
	return nil
}

// start starts a worker for slot sl on revision rev. A worker that cannot be
// started is returned exited, with its failure set.
func (s *Supervisor) start(g *group, sl *slot, rev target, candidate bool) *worker {
	s.nextID++
	now := s.clock.Now()
	gs := &g.spec
	if rs := rev.groups[g.spec.Name]; rs != nil && g.reloadable {
		gs = rs
	}
	w := &worker{id: s.nextID, g: g, s: sl, spec: gs, rev: rev, state: WorkerStarting, started: now, since: now, candidate: candidate}
	spec := ProcessSpec{
		Group:   gs.Name,
		Slot:    sl.index,
		Command: append(append([]string{}, gs.Command...), gs.Args...),
		Dir:     rev.dir,
		Files:   g.files,
		Names:   g.names,
		Notify:  gs.Readiness.Type == v1alpha1.ReadinessNotify,
	}
	for _, e := range gs.Env {
		spec.Env = append(spec.Env, e.Name+"="+e.Value)
	}
	spec.Env = append(spec.Env,
		EnvGroup+"="+gs.Name,
		EnvWorkerID+"="+strconv.Itoa(sl.index),
		EnvRevision+"="+rev.revision,
		EnvCodeDir+"="+rev.dir,
	)
	p, err := s.opts.OS.Start(spec)
	if err != nil {
		w.exited, w.exitErr, w.state = true, err, WorkerExited
		w.failure = fmt.Sprintf("worker %s could not start: %v", w.name(), err)
		s.log.Error("Worker could not start", "worker", w.name(), "revision", rev.revision, "err", err)
		if !candidate {
			s.crashed(w)
		}
		return w
	}
	w.proc = p
	s.live = append(s.live, w)
	s.log.Info("Worker started", "worker", w.name(), "pid", p.Pid(), "revision", rev.revision)
	go s.watch(w)
	r := gs.Readiness
	if r.Type == v1alpha1.ReadinessDelay {
		delay := time.Duration(*r.DelaySeconds) * time.Second
		if delay == 0 {
			w.state = WorkerReady
		} else {
			w.timers = append(w.timers, s.clock.AfterFunc(delay, func() { s.send(evDelayElapsed{w}) }))
		}
	}
	if w.state == WorkerStarting {
		timeout := time.Duration(r.TimeoutSeconds) * time.Second
		w.timers = append(w.timers, s.clock.AfterFunc(timeout, func() { s.send(evReadyDeadline{w}) }))
	}
	return w
}

// watch forwards the events of one process to the Run goroutine.
func (s *Supervisor) watch(w *worker) {
	ready := w.proc.Ready()
	for {
		select {
		case <-ready:
			s.send(evReady{w})
			ready = nil
		case <-w.proc.Done():
			s.send(evExited{w})
			return
		}
	}
}

func (s *Supervisor) handle(ev event) {
	switch e := ev.(type) {
	case evReady:
		if e.w.spec.Readiness.Type == v1alpha1.ReadinessNotify {
			s.markReady(e.w)
		}
	case evDelayElapsed:
		s.markReady(e.w)
	case evReadyDeadline:
		w := e.w
		if w.state != WorkerStarting {
			break
		}
		w.failure = fmt.Sprintf("worker %s (revision %s) was not ready within %ds", w.name(), w.rev.revision, w.spec.Readiness.TimeoutSeconds)
		s.log.Error("Worker not ready in time", "worker", w.name(), "pid", w.proc.Pid(), "revision", w.rev.revision)
		if !w.candidate {
			// A restarted worker that never gets ready is killed, then
			// restarted with backoff like any crash.
			_ = w.proc.Signal(syscall.SIGKILL)
		}
	case evKill:
		if !e.w.exited {
			s.log.Warn("Worker did not stop in time, killing it", "worker", e.w.name(), "pid", e.w.proc.Pid())
			e.w.killed = true
			_ = e.w.proc.Signal(syscall.SIGKILL)
		}
	case evExited:
		s.exited(e.w)
	case evRestart:
		w := e.w
		if w.s.cur == w && !s.stopping {
			w.s.cur = s.start(w.g, w.s, w.rev, false)
		}
	case *reloadRequest:
		s.queue(e)
	case evStop:
		s.stopping = true
	}
	s.publish()
}

func (s *Supervisor) markReady(w *worker) {
	if w.state != WorkerStarting || w.exited {
		return
	}
	w.state = WorkerReady
	w.since = s.clock.Now()
	for _, t := range w.timers { // the readiness timers
		t.Stop()
	}
	w.timers = nil
	s.log.Info("Worker ready", "worker", w.name(), "pid", w.proc.Pid(), "revision", w.rev.revision)
}

func (s *Supervisor) exited(w *worker) {
	w.exited = true
	s.live = slices.DeleteFunc(s.live, func(l *worker) bool { return l == w })
	w.exitErr = w.proc.Err()
	w.since = s.clock.Now()
	for _, t := range w.timers {
		t.Stop()
	}
	w.timers = nil
	wasReady := w.state == WorkerReady
	w.state = WorkerExited
	switch {
	case w.stopping:
		s.stopped(w)
	case w.candidate:
		if w.failure == "" {
			when := "before it was ready"
			if wasReady {
				when = "while the reload was in progress"
			}
			w.failure = fmt.Sprintf("worker %s (revision %s) exited %s: %s", w.name(), w.rev.revision, when, exitString(w.exitErr))
		}
		s.log.Error("New worker exited", "worker", w.name(), "pid", w.proc.Pid(), "revision", w.rev.revision, "exit", exitString(w.exitErr))
	case w.s.cur == w && !s.stopping:
		s.log.Error("Worker exited unexpectedly", "worker", w.name(), "pid", w.proc.Pid(), "exit", exitString(w.exitErr))
		s.crashed(w)
	}
}

// stopped records how long w, told to stop, took to exit, and whether it
// had to be killed.
func (s *Supervisor) stopped(w *worker) {
	took := w.since.Sub(w.stopSent)
	w.g.drains.add(took, w.killed)
	if s.opts.Recorder != nil {
		s.opts.Recorder.WorkerStopped(w.g.spec.Name, took, w.killed)
	}
	s.log.Info("Worker stopped", "worker", w.name(), "pid", w.proc.Pid(), "exit", exitString(w.exitErr), "drain", took, "killed", w.killed)
}

// crashed schedules the restart of the slot's current worker w, with
// exponential backoff.
func (s *Supervisor) crashed(w *worker) {
	sl := w.s
	if s.clock.Since(w.started) >= s.opts.BackoffReset {
		sl.failures = 0
	}
	delay := s.opts.BackoffInitial
	for i := 0; i < sl.failures && delay < s.opts.BackoffMax; i++ {
		delay *= 2
	}
	delay = min(delay, s.opts.BackoffMax)
	sl.failures++
	sl.restarts++
	w.state = WorkerBackoff
	if s.opts.Recorder != nil {
		s.opts.Recorder.WorkerRestarted(w.g.spec.Name)
	}
	s.log.Info("Restarting worker after backoff", "worker", w.name(), "backoff", delay, "restarts", sl.restarts)
	w.timers = append(w.timers, s.clock.AfterFunc(delay, func() { s.send(evRestart{w}) }))
}

// stopWorker sends w its stop signal and arms the kill timer. A worker that
// is waiting for a restart just stops waiting.
func (s *Supervisor) stopWorker(w *worker) {
	if w == nil || w.stopping {
		return
	}
	w.stopping = true
	if w.exited {
		for _, t := range w.timers {
			t.Stop()
		}
		w.state = WorkerExited
		return
	}
	w.state = WorkerStopping
	w.since = s.clock.Now()
	w.stopSent = w.since
	sig := signalByName(w.spec.StopSignal)
	s.log.Info("Stopping worker", "worker", w.name(), "pid", w.proc.Pid(), "signal", string(w.spec.StopSignal))
	if err := w.proc.Signal(sig); err != nil {
		s.log.Warn("Could not signal worker", "worker", w.name(), "pid", w.proc.Pid(), "err", err)
	}
	timeout := time.Duration(w.spec.StopTimeoutSeconds) * time.Second
	w.timers = append(w.timers, s.clock.AfterFunc(timeout, func() { s.send(evKill{w}) }))
}

// drain stops every worker and waits until all exited: those serving a
// slot, those a reload was bringing up, and those already told to stop
// (replaced by a reload) whose stop timeout has not run out yet; each is
// killed after its own stop timeout. Stop requests that come meanwhile are
// already being served.
func (s *Supervisor) drain() {
	s.log.Info("Draining workers", "workers", len(s.live))
	for _, g := range s.groups {
		for _, sl := range g.slots {
			// Also the slots' exited workers: a restart must not come.
			s.stopWorker(sl.cur)
			s.stopWorker(sl.next)
		}
	}
	for _, w := range s.live {
		if w.stopping && w != w.s.cur && w != w.s.next {
			s.log.Info("Waiting for a replaced worker to stop", "worker", w.name(), "pid", w.proc.Pid(), "revision", w.rev.revision)
		}
		s.stopWorker(w)
	}
	s.publish()
	for len(s.live) > 0 {
		s.handle(<-s.events)
	}
	s.log.Info("All workers stopped")
}

func allExited(ws []*worker) bool {
	for _, w := range ws {
		if !w.exited {
			return false
		}
	}
	return true
}

func (s *Supervisor) allReady() bool {
	for _, g := range s.groups {
		for _, sl := range g.slots {
			if sl.cur == nil || sl.cur.state != WorkerReady {
				return false
			}
		}
	}
	return true
}

// publish stores a new snapshot and tells subscribers if the agent status
// changed.
func (s *Supervisor) publish() {
	st := &Status{Agent: s.agentStatus()}
	for _, g := range s.groups {
		st.Groups = append(st.Groups, g.drains.status(g.spec.Name))
		for _, sl := range g.slots {
			for _, w := range []*worker{sl.cur, sl.next} {
				if w == nil {
					continue
				}
				ws := WorkerStatus{
					Group: g.spec.Name, Slot: sl.index, Revision: w.rev.revision, State: w.state,
					Started: w.started, Since: w.since, Restarts: sl.restarts, Reloadable: g.reloadable, Next: w == sl.next,
				}
				if w.proc != nil && !w.exited {
					ws.PID = w.proc.Pid()
				}
				st.Workers = append(st.Workers, ws)
			}
		}
	}
	sort.SliceStable(st.Workers, func(i, j int) bool {
		a, b := st.Workers[i], st.Workers[j]
		if a.Group != b.Group {
			return s.groupIndex(a.Group) < s.groupIndex(b.Group)
		}
		return a.Slot < b.Slot
	})
	old := s.snapshot.Swap(st)
	if old != nil && old.Agent == st.Agent {
		return
	}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for ch := range s.subs {
		select {
		case <-ch:
		default:
		}
		ch <- st.Agent
	}
}

func (s *Supervisor) groupIndex(name string) int {
	for i, g := range s.groups {
		if g.spec.Name == name {
			return i
		}
	}
	return -1
}

func (s *Supervisor) agentStatus() v1alpha1.AgentStatus {
	a := v1alpha1.AgentStatus{State: s.state, Running: s.running.revision, Revision: s.running.revision, Message: s.message}
	if s.current != nil {
		a.Revision = s.current.to.revision
	}
	if s.state == v1alpha1.AgentFailed && s.failed != "" {
		a.Revision = s.failed
	}
	for _, g := range s.groups {
		for _, sl := range g.slots {
			a.Total++
			if sl.cur != nil && sl.cur.state == WorkerReady {
				a.Ready++
			}
		}
	}
	return a
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

var signals = map[v1alpha1.Signal]syscall.Signal{
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGWINCH": syscall.SIGWINCH, "SIGKILL": syscall.SIGKILL,
}

func signalByName(name v1alpha1.Signal) syscall.Signal {
	if sig, ok := signals[name]; ok {
		return sig
	}
	return syscall.SIGTERM
}
