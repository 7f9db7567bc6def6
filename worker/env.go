package worker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// The variables of the worker contract (docs/agent.md, "The worker
// contract").
const (
	EnvListenFDs     = "LISTEN_FDS"
	EnvListenPID     = "LISTEN_PID"
	EnvListenFDNames = "LISTEN_FDNAMES"
	EnvNotifySocket  = "NOTIFY_SOCKET"
	EnvGroup         = "SOFTRELOAD_GROUP"
	EnvWorkerID      = "SOFTRELOAD_WORKER_ID"
	EnvRevision      = "SOFTRELOAD_REVISION"
	EnvCodeDir       = "SOFTRELOAD_CODE_DIR"
)

// firstFD is the first inherited file descriptor (SD_LISTEN_FDS_START).
const firstFD = 3

// ErrNoListeners is returned when the process was given no sockets: it
// does not run under the agent (or its LISTEN_PID names another process).
var ErrNoListeners = errors.New("no sockets passed: LISTEN_FDS is unset or LISTEN_PID is not this process (run under softreload's agent)")

// Identity says which worker this process is.
type Identity struct {
	// Group is the worker group's name.
	Group string
	// ID is the worker's stable slot, 0..count-1; -1 when unset.
	ID int
	// Revision is the revision of the code the worker runs.
	Revision string
	// CodeDir is that revision's immutable directory.
	CodeDir string
}

// Self reads the worker's identity from its environment. Outside the agent
// every field is empty and ID is -1.
func Self() (Identity, error) {
	id := Identity{
		Group:    os.Getenv(EnvGroup),
		ID:       -1,
		Revision: os.Getenv(EnvRevision),
		CodeDir:  os.Getenv(EnvCodeDir),
	}
	if s := os.Getenv(EnvWorkerID); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return id, fmt.Errorf("%s=%q is not a worker slot (0, 1, ...)", EnvWorkerID, s)
		}
		id.ID = n
	}
	return id, nil
}

// NamedListener is an inherited socket and its name in LISTEN_FDNAMES
// (the agent names them GROUP-INDEX, e.g. web-0, in the group's listen
// order).
type NamedListener struct {
	Name string
	net.Listener
}

// Listeners returns the sockets the agent passed, in order (fd 3, 4, ...).
// It returns ErrNoListeners when there are none. Call it once: the
// listeners own the descriptors.
func Listeners() ([]NamedListener, error) {
	n, err := listenFDs()
	if err != nil {
		return nil, err
	}
	var names []string
	if s := os.Getenv(EnvListenFDNames); s != "" {
		names = strings.Split(s, ":")
	}
	ls := make([]NamedListener, 0, n)
	for i := range n {
		name := fmt.Sprintf("fd%d", firstFD+i)
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		f := os.NewFile(uintptr(firstFD+i), name)
		l, err := net.FileListener(f) // a dup: the original is closed below
		f.Close()
		if err != nil {
			for _, o := range ls {
				o.Close()
			}
			return nil, fmt.Errorf("inherited socket %s (fd %d): %w", name, firstFD+i, err)
		}
		ls = append(ls, NamedListener{Name: name, Listener: l})
	}
	return ls, nil
}

// Listener returns the inherited socket called name and closes the others.
func Listener(name string) (net.Listener, error) {
	ls, err := Listeners()
	if err != nil {
		return nil, err
	}
	var found net.Listener
	var have []string
	for _, l := range ls {
		if l.Name == name && found == nil {
			found = l.Listener
			continue
		}
		have = append(have, l.Name)
		l.Close()
	}
	if found == nil {
		return nil, fmt.Errorf("no inherited socket named %q (%s has %s)", name, EnvListenFDNames, strings.Join(have, ", "))
	}
	return found, nil
}

// listenFDs is sd_listen_fds(3): how many sockets were passed to this
// process.
func listenFDs() (int, error) {
	fds, pid := os.Getenv(EnvListenFDs), os.Getenv(EnvListenPID)
	if fds == "" || pid != strconv.Itoa(os.Getpid()) {
		return 0, ErrNoListeners
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q is not a number of sockets", EnvListenFDs, fds)
	}
	if n == 0 {
		return 0, ErrNoListeners
	}
	return n, nil
}

// Notify sends state (e.g. "READY=1") to the agent over NOTIFY_SOCKET, as
// sd_notify(3) does. Without NOTIFY_SOCKET it does nothing.
func Notify(state string) error {
	path := os.Getenv(EnvNotifySocket)
	if path == "" {
		return nil
	}
	if strings.HasPrefix(path, "@") {
		path = "\x00" + path[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify %q: %w", state, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify %q: %w", state, err)
	}
	return nil
}

// Ready tells the agent that the worker serves: READY=1.
func Ready() error { return Notify("READY=1") }
