package process

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// shimEnv marks a run of the agent binary as the shim.
const shimEnv = "SOFTRELOAD_SHIM"

// shimArg0 is the shim's argv[0], what ps shows for the instant it lives.
const shimArg0 = "softreload-shim"

// RunShimIfAsked turns this process into the worker it was asked to start,
// if it was started as the shim; otherwise it returns at once. Call it
// first thing in main, before anything opens files.
func RunShimIfAsked() {
	if os.Getenv(shimEnv) != "1" {
		return
	}
	os.Exit(runShim(os.Args[1:]))
}

func runShim(args []string) int {
	_ = os.Unsetenv(shimEnv)
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "softreload-shim: no command to run")
		return 127
	}
	if os.Getenv("LISTEN_FDS") != "" {
		// exec keeps the pid: the worker sees its own pid here.
		_ = os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	prog := args[0]
	if !strings.Contains(prog, "/") {
		p, err := exec.LookPath(prog)
		if err != nil {
			fmt.Fprintf(os.Stderr, "softreload: cannot run %q: not found in PATH\n", prog)
			return 127
		}
		prog = p
	}
	err := syscall.Exec(prog, args, os.Environ())
	fmt.Fprintf(os.Stderr, "softreload: cannot run %q: %v\n", args[0], err)
	return 127
}
