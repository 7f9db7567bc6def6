package sockets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/softreload/softreload/api/v1alpha1"
)

// Address is a parsed listen address.
type Address struct {
	// Network is tcp, tcp4, tcp6 or unix.
	Network string
	// Addr is what net.Listen takes: host:port, [host]:port or a path.
	Addr string
}

// Parse parses tcp://HOST:PORT, tcp4://HOST:PORT, tcp6://[HOST]:PORT or
// unix:///absolute/path.
func Parse(a v1alpha1.ListenAddress) (Address, error) {
	if err := v1alpha1.ValidateListenAddress(a); err != nil {
		return Address{}, fmt.Errorf("listen address %q: %w", a, err)
	}
	scheme, rest, _ := strings.Cut(string(a), "://")
	if scheme == "unix" {
		return Address{Network: "unix", Addr: rest}, nil
	}
	return Address{Network: scheme, Addr: rest}, nil
}

// Set holds the bound sockets of every group.
type Set struct {
	listeners []net.Listener
	files     map[string][]*os.File
	addrs     map[string][]net.Addr
}

// Bind binds every listen address of groups. On error nothing stays bound,
// and the error names the group and the address.
func Bind(ctx context.Context, groups []v1alpha1.WorkerGroup) (*Set, error) {
	s := &Set{files: map[string][]*os.File{}, addrs: map[string][]net.Addr{}}
	for _, g := range groups {
		for _, a := range g.Listen {
			f, l, err := bind(ctx, a)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("group %q: cannot listen on %s: %w", g.Name, a, err)
			}
			s.listeners = append(s.listeners, l)
			s.files[g.Name] = append(s.files[g.Name], f)
			s.addrs[g.Name] = append(s.addrs[g.Name], l.Addr())
		}
	}
	return s, nil
}

// Files returns, per group name, the files to pass to its workers, in listen
// order.
func (s *Set) Files() map[string][]*os.File { return s.files }

// Addrs returns the bound addresses of a group, in listen order: with port
// 0 in the config, the port the system chose.
func (s *Set) Addrs(group string) []net.Addr { return s.addrs[group] }

// Close closes every socket; a unix socket's file is removed.
func (s *Set) Close() error {
	var errs []error
	for _, l := range s.listeners {
		errs = append(errs, l.Close())
	}
	for _, fs := range s.files {
		for _, f := range fs {
			errs = append(errs, f.Close())
		}
	}
	s.listeners, s.files = nil, map[string][]*os.File{}
	return errors.Join(errs...)
}

func bind(ctx context.Context, a v1alpha1.ListenAddress) (*os.File, net.Listener, error) {
	addr, err := Parse(a)
	if err != nil {
		return nil, nil, err
	}
	if addr.Network == "unix" {
		if err := removeStale(addr.Addr); err != nil {
			return nil, nil, err
		}
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, addr.Network, addr.Addr)
	if err != nil {
		return nil, nil, err
	}
	var f *os.File
	switch l := l.(type) {
	case *net.TCPListener:
		f, err = fileOf(l, addr.Addr)
	case *net.UnixListener:
		l.SetUnlinkOnClose(true)
		f, err = fileOf(l, addr.Addr)
	default:
		err = fmt.Errorf("unexpected listener %T", l)
	}
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return f, l, nil
}

// fileOf returns a file of l's socket to pass to workers, one whose Fd
// leaves the socket as it is. The File of net's listeners would not: its
// Fd, which os.StartProcess calls at every worker start, puts the socket,
// one open file shared by every worker, into blocking mode. A running
// worker that waits for the socket and then accepts (Go's net, Python's
// socketserver, PHP's socket_select) then blocks in accept when another
// worker took the connection, until the next one comes, deaf to its stop
// signal: with kept-alive clients, new connections are rare and the agent
// kills it after the stop timeout.
func fileOf(l syscall.Conn, name string) (*os.File, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, fmt.Errorf("duplicating the socket: %w", derr)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// removeStale removes a unix socket file left by a previous run, if nothing
// answers on it. Anything else at the path is an error.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by another process", path)
	}
	return os.Remove(path)
}
