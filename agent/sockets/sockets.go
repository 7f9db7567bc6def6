package sockets

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
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

// Set holds the bound sockets of every group, one per address: an address
// bound once keeps its socket, and so its accept queue, until it is
// unbound, whatever else changes.
type Set struct {
	mu sync.Mutex
	// bound holds the socket of every bound address.
	bound map[v1alpha1.ListenAddress]*socket
	// files and addrs are those of the groups Bind was given, in listen
	// order.
	files map[string][]*os.File
	addrs map[string][]net.Addr
}

// socket is one bound address: the listener, and the file workers get.
type socket struct {
	l net.Listener
	f *os.File
}

// Bind binds every listen address of groups. On error nothing stays bound,
// and the error names the group and the address.
func Bind(ctx context.Context, groups []v1alpha1.WorkerGroup) (*Set, error) {
	s := &Set{bound: map[v1alpha1.ListenAddress]*socket{}, files: map[string][]*os.File{}, addrs: map[string][]net.Addr{}}
	for _, g := range groups {
		for _, a := range g.Listen {
			sock, err := bind(ctx, a)
			if err != nil {
				_ = s.Close()
				return nil, fmt.Errorf("group %q: cannot listen on %s: %w", g.Name, a, err)
			}
			s.bound[a] = sock
			s.files[g.Name] = append(s.files[g.Name], sock.f)
			s.addrs[g.Name] = append(s.addrs[g.Name], sock.l.Addr())
		}
	}
	return s, nil
}

// Files returns, per group name, the files to pass to its workers, in listen
// order, of the groups Bind was given.
func (s *Set) Files() map[string][]*os.File { return s.files }

// Addrs returns the bound addresses of a group Bind was given, in listen
// order: with port 0 in the config, the port the system chose.
func (s *Set) Addrs(group string) []net.Addr { return s.addrs[group] }

// Addr returns the bound address of a, nil if a is not bound.
func (s *Set) Addr(a v1alpha1.ListenAddress) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sock := s.bound[a]; sock != nil {
		return sock.l.Addr()
	}
	return nil
}

// BindAddress binds a, if it is not bound yet, and returns the file to pass
// to workers. A group that adds an address to its listen list gets it so.
func (s *Set) BindAddress(a v1alpha1.ListenAddress) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sock := s.bound[a]; sock != nil {
		return sock.f, nil
	}
	sock, err := bind(context.Background(), a)
	if err != nil {
		return nil, err
	}
	s.bound[a] = sock
	return sock.f, nil
}

// Unbind closes the socket of a, once no worker uses it; a unix socket's
// file is removed.
func (s *Set) Unbind(a v1alpha1.ListenAddress) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sock := s.bound[a]
	if sock == nil {
		return nil
	}
	delete(s.bound, a)
	return errors.Join(sock.l.Close(), sock.f.Close())
}

// Close closes every socket; a unix socket's file is removed.
func (s *Set) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, sock := range s.bound {
		errs = append(errs, sock.l.Close(), sock.f.Close())
	}
	s.bound = map[v1alpha1.ListenAddress]*socket{}
	return errors.Join(errs...)
}

func bind(ctx context.Context, a v1alpha1.ListenAddress) (*socket, error) {
	addr, err := Parse(a)
	if err != nil {
		return nil, err
	}
	if addr.Network == "unix" {
		if err := removeStale(addr.Addr); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, addr.Network, addr.Addr)
	if err != nil {
		return nil, err
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
		return nil, err
	}
	return &socket{l: l, f: f}, nil
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
