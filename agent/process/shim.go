package process

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// shimEnv marks a run of the agent binary as the shim.
const shimEnv = "SOFTRELOAD_SHIM"

// shimArg0 is the shim's argv[0], what ps shows for the instant it lives.
const shimArg0 = "softreload-shim"

// The shim execs from the process's main thread. The agent starts each
// worker with a parent-death signal (SIGKILL), which the kernel keeps per
// thread: a process that execs from another thread becomes that thread and
// loses it (a new thread starts without one), and its worker would outlive
// a killed agent, holding the pod's ports. The Go runtime may move the main
// goroutine to another thread before main runs; locking it in init keeps
// it on the main thread.
func init() {
	if os.Getenv(shimEnv) == "1" {
		runtime.LockOSThread()
	}
}

// RunShimIfAsked turns this process into the worker it was asked to start,
// if it was started as the shim; otherwise it returns at once. Call it
// first thing in main, before anything opens files.
func RunShimIfAsked() {
	if os.Getenv(shimEnv) != "1" {
		return
	}
	err := runShim(os.Args[1:])
	fmt.Fprintln(os.Stderr, "softreload:", err)
	os.Exit(127) // the shell's "command not found"
}

// runShim execs the worker; it returns only on failure.
func runShim(args []string) error {
	_ = os.Unsetenv(shimEnv)
	if len(args) == 0 {
		return errors.New("the shim has no command to run")
	}
	if os.Getenv("LISTEN_FDS") != "" {
		// exec keeps the pid: the worker sees its own pid here.
		_ = os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	prog := args[0]
	if !strings.Contains(prog, "/") {
		p, err := exec.LookPath(prog)
		if err != nil {
			return fmt.Errorf("cannot run %q: not found in PATH", prog)
		}
		prog = p
	}
	err := syscall.Exec(prog, args, os.Environ())
	return fmt.Errorf("cannot run %q: %w", args[0], err)
}
