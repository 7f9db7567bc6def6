package supervisor

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
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
	// Sockets binds the addresses that a revision adds to a group, and
	// closes those no group listens on any more. Without it, a revision
	// that adds an address fails.
	Sockets Sockets
	// Revision and CodeDir are what the workers start with; Code, if set,
	// says what that code is (Target.Code).
	Revision string
	CodeDir  string
	Code     string

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

// Sockets binds and closes listen addresses for the supervisor. An address
// is bound once, whatever group listens on it, and stays bound while a
// group or a worker may use it.
type Sockets interface {
	// BindAddress binds addr, if it is not bound, and returns the socket
	// to hand to workers.
	BindAddress(addr v1alpha1.ListenAddress) (*os.File, error)
	// Unbind closes the agent's socket of addr.
	Unbind(addr v1alpha1.ListenAddress) error
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
	groups []*group
	// files holds the bound socket of every address a group or a worker
	// listens on.
	files    map[v1alpha1.ListenAddress]*os.File
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

// target is a revision to run: its name, its code directory, what its code
// is (Target.Code), its groups by name and in order (nil: those of the
// running revision) and, if it changes it, the strategy.
type target struct {
	revision, dir, code string
	groups              map[string]*v1alpha1.WorkerGroup
	order               []string
	strategy            *v1alpha1.RolloutStrategy
}

// sameCode reports whether t and o run the same code: the same revision in
// the same directory, or two revisions in the same directory whose Code
// says they are the same code.
func (t target) sameCode(o target) bool {
	if t.dir != o.dir {
		return false
	}
	return t.revision == o.revision || t.code != "" && t.code == o.code
}

// same reports whether t and o are the same revision with the same groups
// (nil groups: whatever the groups).
func (t target) same(o target) bool {
	if t.revision != o.revision || t.dir != o.dir {
		return false
	}
	if t.groups == nil || o.groups == nil {
		return true
	}
	if !slices.Equal(t.order, o.order) {
		return false
	}
	for name, g := range t.groups {
		if !equality.Semantic.DeepEqual(g, o.groups[name]) {
			return false
		}
	}
	return true
}

// Target is a revision to reload to.
type Target struct {
	// Revision names the revision; CodeDir holds its code.
	Revision string
	CodeDir  string
	// Code, if set, says what the code is, for a revision whose name also
	// stands for its groups (a pod's): a worker of another revision in the
	// same CodeDir with the same Code runs this revision's code, and keeps
	// serving if its group's spec stays the same but for the count and the
	// reloadable flag. Such a worker keeps the revision it was started
	// with (SOFTRELOAD_REVISION, and in the status). Empty: the Revision
	// says what the code is.
	Code string
	// Groups are the revision's groups, when it changes them; nil keeps the
	// groups of the running revision. Any field of a reloadable group may
	// change, groups may come and go (see reload), and the reloadable flag
	// of the revision decides from this reload on. Groups that are not
	// reloadable keep their workers and their spec, and the status says
	// when the revision's spec of them differs.
	Groups []v1alpha1.WorkerGroup
	// Strategy, if set, is how workers are replaced from this reload on.
	Strategy *v1alpha1.RolloutStrategy
}

func (t Target) internal() target {
	to := target{revision: t.Revision, dir: t.CodeDir, code: t.Code}
	if t.Strategy != nil {
		st := *t.Strategy
		v1alpha1.SetStrategyDefaults(&st)
		to.strategy = &st
	}
	if t.Groups != nil {
		to.groups, to.order = groupsByName(t.Groups)
	}
	return to
}

// groupsByName returns groups, defaults set, by name and the names in
// order.
func groupsByName(groups []v1alpha1.WorkerGroup) (map[string]*v1alpha1.WorkerGroup, []string) {
	byName := map[string]*v1alpha1.WorkerGroup{}
	var order []string
	for _, g := range groups {
		g := *g.DeepCopy()
		v1alpha1.SetGroupDefaults(&g)
		byName[g.Name] = &g
		order = append(order, g.Name)
	}
	return byName, order
}

type group struct {
	// spec is what the group's workers run, hash its GroupSpecHash;
	// reloadable is its flag.
	spec       v1alpha1.WorkerGroup
	hash       string
	reloadable bool
	// outdated says why the running revision's spec of the group is not
	// spec (a group that is not reloadable keeps its processes).
	outdated v1alpha1.GroupOutdatedReason
	slots    []*slot
	drains   drains
}

// newGroup returns a group of spec with its slots and no worker yet.
func newGroup(spec v1alpha1.WorkerGroup) *group {
	g := &group{spec: spec, hash: v1alpha1.GroupSpecHash(spec), reloadable: *spec.Reloadable}
	for i := 0; i < int(spec.Count); i++ {
		g.slots = append(g.slots, &slot{index: i})
	}
	return g
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
		running: target{revision: opts.Revision, dir: opts.CodeDir, code: opts.Code},
		state:   v1alpha1.AgentReloading,
		files:   map[v1alpha1.ListenAddress]*os.File{},
	}
	s.running.groups, s.running.order = groupsByName(opts.Groups)
	for _, name := range s.running.order {
		spec := s.running.groups[name]
		files := opts.Listeners[name]
		if len(files) != len(spec.Listen) {
			return nil, fmt.Errorf("supervisor: group %q listens on %d addresses and has %d sockets", name, len(spec.Listen), len(files))
		}
		for i, a := range spec.Listen {
			s.files[a] = files[i]
		}
		s.groups = append(s.groups, newGroup(*spec))
	}
	s.publish()
	return s, nil
}
