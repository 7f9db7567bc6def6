package process

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/softreload/softreload/agent/supervisor"
)

// Options configures an OS. Zero values mean the defaults.
type Options struct {
	// Shim is the binary started as the shim: this program, by default
	// /proc/self/exe. It must call RunShimIfAsked.
	Shim string
	// RuntimeDir holds the notify sockets; a new temporary directory by
	// default, removed by Close.
	RuntimeDir string
	// Stdout and Stderr receive the workers' output; os.Stdout and
	// os.Stderr by default.
	Stdout, Stderr io.Writer
	// NoPrefix passes output lines through as they are, without the
	// "[group/slot] " prefix.
	NoPrefix bool
	// OutputLines is how many last lines of output are kept per worker
	// (20).
	OutputLines int
	// OutputWait bounds how long a worker that exited is waited for until
	// its readers have handled what it wrote (2 s). The wait ends as soon
	// as they have: only a reader starved of CPU takes that long.
	OutputWait time.Duration
}

// OS starts real worker processes. It implements supervisor.OS.
type OS struct {
	opts    Options
	ownsDir bool
	seq     atomic.Uint64
	stdout  *lockedWriter
	stderr  *lockedWriter
}

var _ supervisor.OS = (*OS)(nil)

// New returns an OS ready to start workers.
func New(opts Options) (*OS, error) {
	if opts.Shim == "" {
		opts.Shim = "/proc/self/exe"
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.OutputLines <= 0 {
		opts.OutputLines = 20
	}
	if opts.OutputWait <= 0 {
		opts.OutputWait = 2 * time.Second
	}
	o := &OS{opts: opts}
	if o.opts.RuntimeDir == "" {
		dir, err := os.MkdirTemp("", "softreload-")
		if err != nil {
			return nil, fmt.Errorf("creating the runtime directory: %w", err)
		}
		o.opts.RuntimeDir, o.ownsDir = dir, true
	}
	o.stdout = &lockedWriter{w: opts.Stdout}
	o.stderr = &lockedWriter{w: opts.Stderr}
	if opts.Stdout == opts.Stderr {
		o.stderr = o.stdout
	}
	startReaper()
	return o, nil
}

// Close removes the runtime directory if New created it.
func (o *OS) Close() error {
	if o.ownsDir {
		return os.RemoveAll(o.opts.RuntimeDir)
	}
	return nil
}

// inherited are variables of the agent's own environment that must not leak
// into a worker's: the agent may itself run under systemd.
var inherited = []string{"LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES=", "NOTIFY_SOCKET=", shimEnv + "="}

// Start starts one worker through the shim.
func (o *OS) Start(spec supervisor.ProcessSpec) (supervisor.Process, error) {
	if len(spec.Command) == 0 {
		return nil, errors.New("no command")
	}
	p := &proc{
		name:  fmt.Sprintf("%s/%d", spec.Group, spec.Slot),
		ready: make(chan struct{}),
		done:  make(chan struct{}),
		exit:  make(chan struct{}),
		keep:  o.opts.OutputLines,
	}
	env := make([]string, 0, len(os.Environ())+len(spec.Env)+5)
	for _, e := range os.Environ() {
		if !hasAnyPrefix(e, inherited) {
			env = append(env, e)
		}
	}
	env = append(env, spec.Env...)
	if len(spec.Files) > 0 {
		env = append(env, "LISTEN_FDS="+strconv.Itoa(len(spec.Files)), "LISTEN_FDNAMES="+strings.Join(spec.Names, ":"))
	}
	if spec.Notify {
		path := filepath.Join(o.opts.RuntimeDir, fmt.Sprintf("notify-%d.sock", o.seq.Add(1)))
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
		if err != nil {
			return nil, fmt.Errorf("creating the notify socket of %s: %w", p.name, err)
		}
		p.notify = conn
		env = append(env, "NOTIFY_SOCKET="+path)
	}
	env = append(env, shimEnv+"=1")

	outR, outW, err := os.Pipe()
	if err != nil {
		p.closeNotify()
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		p.closeNotify()
		outR.Close()
		outW.Close()
		return nil, err
	}
	files := append([]*os.File{os.Stdin, outW, errW}, spec.Files...)
	attr := &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	argv := append([]string{shimArg0}, spec.Command...)

	theReaper.mu.Lock()
	osp, err := os.StartProcess(o.opts.Shim, argv, attr)
	if err == nil {
		p.osp, p.pid = osp, osp.Pid
		theReaper.procs[osp.Pid] = p
	}
	theReaper.mu.Unlock()
	outW.Close()
	errW.Close()
	if err != nil {
		p.closeNotify()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting %s: %w", p.name, err)
	}

	prefix := ""
	if !o.opts.NoPrefix {
		prefix = "[" + p.name + "] "
	}
	streams := []*outputStream{newOutputStream(outR), newOutputStream(errR)}
	var readers sync.WaitGroup
	readers.Add(2)
	go p.copyOutput(&readers, streams[0], o.stdout, prefix)
	go p.copyOutput(&readers, streams[1], o.stderr, prefix)
	if p.notify != nil {
		go p.readNotify()
	}
	go theReaper.waitFor(p)
	go p.finish(&readers, streams, o.opts.OutputWait)
	return p, nil
}

type proc struct {
	name   string
	pid    int
	osp    *os.Process
	notify *net.UnixConn
	ready  chan struct{}
	exit   chan struct{} // closed when reaped
	done   chan struct{} // closed when reaped and output read
	keep   int

	readyOnce sync.Once
	mu        sync.Mutex
	err       error
	exited    bool
	lines     []string
}

func (p *proc) Pid() int               { return p.pid }
func (p *proc) Ready() <-chan struct{} { return p.ready }
func (p *proc) Done() <-chan struct{}  { return p.done }

func (p *proc) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *proc) Output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Signal sends sig to the worker; SIGKILL goes to its whole process group,
// so that what it started dies with it.
func (p *proc) Signal(sig os.Signal) error {
	theReaper.mu.Lock()
	defer theReaper.mu.Unlock()
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited {
		return os.ErrProcessDone
	}
	if sig == syscall.SIGKILL {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	return p.osp.Signal(sig)
}

// reaped is called by the reaper, with its lock held.
func (p *proc) reaped(ws syscall.WaitStatus, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return
	}
	p.exited = true
	switch {
	case err != nil:
		p.err = err
	case ws.Signaled():
		p.err = fmt.Errorf("killed by signal %v", ws.Signal())
	case ws.ExitStatus() != 0:
		p.err = fmt.Errorf("exit status %d", ws.ExitStatus())
	}
	_ = p.osp.Release()
	close(p.exit)
}

// finish closes done once the worker is reaped and its output handled.
// Its pipes usually end with it; a child it left behind may hold them
// open, and then done waits only until the readers have handled what the
// pipes held (the worker's own output, written before it exited), not for
// the child: the child's output still passes through until it ends.
func (p *proc) finish(readers *sync.WaitGroup, streams []*outputStream, limit time.Duration) {
	<-p.exit
	read := make(chan struct{})
	go func() { readers.Wait(); close(read) }()
	check := time.NewTicker(5 * time.Millisecond)
	defer check.Stop()
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
wait:
	for {
		select {
		case <-read:
			break wait
		case <-timeout.C:
			break wait
		case <-check.C:
			if drained(streams) {
				break wait
			}
		}
	}
	p.closeNotify()
	close(p.done)
}

func (p *proc) closeNotify() {
	if p.notify != nil {
		_ = p.notify.Close()
		_ = os.Remove(p.notify.LocalAddr().String())
	}
}

func (p *proc) readNotify() {
	buf := make([]byte, 4096)
	for {
		n, err := p.notify.Read(buf)
		if err != nil {
			return
		}
		for _, line := range bytes.Split(buf[:n], []byte("\n")) {
			if string(line) == "READY=1" {
				p.readyOnce.Do(func() { close(p.ready) })
			}
		}
	}
}

const maxLine = 4096

// outputBuffer is the read buffer of each of a worker's output streams.
const outputBuffer = 4096

func (p *proc) copyOutput(wg *sync.WaitGroup, r *outputStream, w *lockedWriter, prefix string) {
	defer wg.Done()
	defer r.Close()
	// ReadString collects a line longer than the buffer across reads, so a
	// small buffer loses nothing; every worker holds two of them for life.
	br := bufio.NewReaderSize(r, outputBuffer)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			w.write(prefix, line)
			kept := strings.TrimRight(line, "\r\n")
			if len(kept) > maxLine {
				kept = kept[:maxLine] + "…"
			}
			p.mu.Lock()
			p.lines = append(p.lines, kept)
			if len(p.lines) > p.keep {
				p.lines = p.lines[len(p.lines)-p.keep:]
			}
			p.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// lockedWriter writes whole lines, so that workers' lines do not mix.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) write(prefix, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, prefix+line)
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// WithMemory returns st with each worker's resident memory filled in.
func WithMemory(st supervisor.Status) supervisor.Status {
	st.Workers = append([]supervisor.WorkerStatus(nil), st.Workers...)
	for i := range st.Workers {
		if pid := st.Workers[i].PID; pid > 0 {
			st.Workers[i].MemoryBytes = MemoryBytes(pid)
		}
	}
	return st
}

// MemoryBytes returns the resident memory of pid (VmRSS), or 0 if unknown.
func MemoryBytes(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
