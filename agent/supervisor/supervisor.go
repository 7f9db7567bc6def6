package supervisor

import (
	"errors"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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
