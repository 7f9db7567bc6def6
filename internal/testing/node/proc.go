package node

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/softreload/softreload/internal/local"
)

// process is one part of the cluster, its output in logs/NAME.log.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// start runs bin with args, its output in the cluster's log directory.
func (c *Cluster) start(name, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(c.dir, "logs", name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = c.env()
	// Its own process group, so that a terminal's Ctrl-C reaches the test
	// alone, which stops the cluster in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return p, nil
}

// exited says whether p has exited, and how.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%w); the end of %s:\n%s", p.name, p.err, p.log, Tail(p.log, 30))
	default:
		return nil
	}
}

// stop stops p: SIGTERM and, after grace, SIGKILL.
func (p *process) stop(grace time.Duration) {
	local.Terminate(p.cmd, p.done, grace)
}

// waitUntil polls ok every 100ms until it holds, p exits or timeout
// passes; the error tells which, with the end of p's log.
func (p *process) waitUntil(what string, timeout time.Duration, ok func() error) error {
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		if last = ok(); last == nil {
			return true, nil
		}
		return false, p.exited()
	})
	if err == nil || !wait.Interrupted(err) {
		return err // nil, or p exited
	}
	return fmt.Errorf("%s: %s not within %v (last: %w); the end of %s:\n%s", p.name, what, timeout, last, p.log, Tail(p.log, 30))
}

// Tail returns the last n lines of the file at path.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs a command to its end; its error holds the command's output.
func (c *Cluster) run(bin string, args ...string) error {
	cmd := exec.Command(bin, args...)
	cmd.Env = c.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return nil
}
