package supervisor

import (
	"os"
)

// OS starts worker processes. Package process implements it with real
// processes; tests use a fake.
type OS interface {
	// Start starts one worker. An error means no process was started.
	Start(spec ProcessSpec) (Process, error)
}

// ProcessSpec is what a worker is started with.
type ProcessSpec struct {
	// Group and Slot name the worker (for output prefixes and errors).
	Group string
	Slot  int
	// Command is the program and its arguments; a program with a slash is
	// relative to Dir, one without is looked up in PATH.
	Command []string
	// Dir is the working directory: the revision's code directory.
	Dir string
	// Env is added to the environment the agent runs with.
	Env []string
	// Files are the listening sockets, passed from fd 3 on with LISTEN_FDS,
	// LISTEN_PID and LISTEN_FDNAMES (from Names).
	Files []*os.File
	Names []string
	// Notify asks for a NOTIFY_SOCKET on which the worker reports READY=1.
	Notify bool
}

// Process is a started worker.
type Process interface {
	Pid() int
	// Signal sends sig to the worker.
	Signal(sig os.Signal) error
	// Ready is closed when the worker sent READY=1 to its NOTIFY_SOCKET.
	Ready() <-chan struct{}
	// Done is closed once the worker has exited and been reaped.
	Done() <-chan struct{}
	// Err is the exit status after Done: nil for a clean exit.
	Err() error
	// Output returns the last lines the worker wrote.
	Output() []string
}
