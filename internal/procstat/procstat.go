// Package procstat reads what Linux's /proc/PID/stat says of a process:
// its state, parent, CPU time and start time. The agent's tests, the local
// cluster, the real-node harness and the benchmarks all ask these of the
// processes they start.
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Stat is one reading of /proc/PID/stat.
type Stat struct {
	Comm  string // the command name, as the kernel keeps it
	State byte   // R, S, D, Z (exited, not yet reaped), ...
	PPid  int
	// UTime and STime are the CPU time spent in user and kernel mode, in
	// clock ticks.
	UTime, STime uint64
	// StartTime is when the process started, in clock ticks after boot:
	// with the pid, it names one process, as a later process can be given
	// the same pid.
	StartTime uint64
}

// clockTick is the length of a clock tick (USER_HZ), which is 100 a second
// on every Linux architecture that Go supports.
const clockTick = 10 * time.Millisecond

// Read reads /proc/pid/stat. Its error wraps os.ErrNotExist when there is
// no process pid.
func Read(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return parse(pid, b)
}

// parse reads the fields of proc(5): "pid (comm) state ppid ...", where the
// command may hold spaces and parentheses.
func parse(pid int, b []byte) (Stat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("/proc/%d/stat has no command in parentheses: %q", pid, b)
	}
	f := strings.Fields(string(b[end+1:]))
	// After the command: state (3), ppid (4), ... utime (14), stime (15),
	// ... starttime (22).
	if len(f) < 20 {
		return Stat{}, fmt.Errorf("/proc/%d/stat has %d fields after the command, not 20 or more: %q", pid, len(f), b)
	}
	if len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("/proc/%d/stat has state %q, not one letter: %q", pid, f[0], b)
	}
	st := Stat{Comm: string(b[open+1 : end]), State: f[0][0]}
	var errs [4]error
	st.PPid, errs[0] = strconv.Atoi(f[1])
	st.UTime, errs[1] = strconv.ParseUint(f[11], 10, 64)
	st.STime, errs[2] = strconv.ParseUint(f[12], 10, 64)
	st.StartTime, errs[3] = strconv.ParseUint(f[19], 10, 64)
	for _, err := range errs {
		if err != nil {
			return Stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return st, nil
}

// Exited reports whether the process has exited and only waits for its
// parent to reap it: a zombie holds no memory, file or socket.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// CPU is the CPU time the process used, in user and kernel mode.
func (s Stat) CPU() time.Duration { return time.Duration(s.UTime+s.STime) * clockTick }

// Runs reports whether the process pid that started at start still runs:
// it exists, has not exited, and is not a later process with its pid.
func Runs(pid int, start uint64) bool {
	st, err := Read(pid)
	return err == nil && !st.Exited() && st.StartTime == start
}
