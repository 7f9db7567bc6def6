package sockets_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/softreload/softreload/agent/sockets"
	"github.com/softreload/softreload/api/v1alpha1"
)

func TestParse(t *testing.T) {
	tests := map[v1alpha1.ListenAddress]sockets.Address{
		"tcp://:8080":            {Network: "tcp", Addr: ":8080"},
		"tcp://0.0.0.0:80":       {Network: "tcp", Addr: "0.0.0.0:80"},
		"tcp4://127.0.0.1:9000":  {Network: "tcp4", Addr: "127.0.0.1:9000"},
		"tcp6://[::1]:443":       {Network: "tcp6", Addr: "[::1]:443"},
		"tcp://[::]:80":          {Network: "tcp", Addr: "[::]:80"},
		"unix:///run/app/a.sock": {Network: "unix", Addr: "/run/app/a.sock"},
	}
	for in, want := range tests {
		got, err := sockets.Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Parse(%q) (-want +got):\n%s", in, diff)
		}
	}
	for _, bad := range []v1alpha1.ListenAddress{"8080", "http://:80", "tcp://:0", "unix://rel.sock", "tcp6://::1:80"} {
		if _, err := sockets.Parse(bad); err == nil || !strings.Contains(err.Error(), string(bad)) {
			t.Errorf("Parse(%q) = %v, want an error naming it", bad, err)
		}
	}
}

// TestBindKeepsOneQueue: a connection made while no worker accepts waits
// in the queue of the agent's socket, and a worker started later accepts it
// from the file it was handed.
func TestBindKeepsOneQueue(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "app.sock")
	groups := []v1alpha1.WorkerGroup{
		{Name: "web", Listen: []v1alpha1.ListenAddress{v1alpha1.ListenAddress("tcp4://127.0.0.1:" + freePort(t)), v1alpha1.ListenAddress("unix://" + sock)}},
		{Name: "gw", Listen: []v1alpha1.ListenAddress{v1alpha1.ListenAddress("tcp6://[::1]:" + freePort6(t))}},
	}
	set, err := sockets.Bind(context.Background(), groups)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if n := len(set.Files()["web"]); n != 2 {
		t.Fatalf("web has %d files, want 2", n)
	}
	for i, a := range set.Addrs("web") {
		c, err := net.Dial(a.Network(), a.String())
		if err != nil {
			t.Fatalf("dial %s: %v", a, err)
		}
		defer c.Close()
		// A "worker" takes the file now, after the connection was queued.
		l, err := net.FileListener(set.Files()["web"][i])
		if err != nil {
			t.Fatal(err)
		}
		ac, err := l.Accept()
		if err != nil {
			t.Fatalf("accept on %s: %v", a, err)
		}
		ac.Close()
		l.Close()
	}
	if err := set.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the unix socket file is still there after Close: %v", err)
	}
}

func TestBindUnixSocket(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // leaves the file, as a killed agent does

	live := filepath.Join(dir, "live.sock")
	ll, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	set, err := sockets.Bind(context.Background(), []v1alpha1.WorkerGroup{{Name: "web", Listen: []v1alpha1.ListenAddress{v1alpha1.ListenAddress("unix://" + stale)}}})
	if err != nil {
		t.Fatalf("a stale socket file should be replaced: %v", err)
	}
	set.Close()
	for path, want := range map[string]string{live: "in use by another process", file: "is not a socket"} {
		_, err := sockets.Bind(context.Background(), []v1alpha1.WorkerGroup{{Name: "web", Listen: []v1alpha1.ListenAddress{v1alpha1.ListenAddress("unix://" + path)}}})
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `group "web"`) {
			t.Errorf("Bind on %s = %v, want an error naming the group and saying %q", path, err, want)
		}
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func freePort6(t *testing.T) string {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// TestPassingLeavesTheSocketNonBlocking checks that starting a worker does
// not make the shared socket blocking: os.StartProcess calls Fd on every
// file it passes, and the File of net's listeners would turn the socket
// blocking for every worker at each start.
func TestPassingLeavesTheSocketNonBlocking(t *testing.T) {
	s, err := sockets.Bind(context.Background(), []v1alpha1.WorkerGroup{{Name: "web", Listen: []v1alpha1.ListenAddress{
		v1alpha1.ListenAddress("tcp4://127.0.0.1:" + freePort(t)),
		v1alpha1.ListenAddress("unix://" + filepath.Join(t.TempDir(), "app.sock")),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, f := range s.Files()["web"] {
		fd := int(f.Fd()) // what os.StartProcess does with it
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			t.Fatal(err)
		}
		if flags&unix.O_NONBLOCK == 0 {
			t.Errorf("%s is blocking once passed: a worker waiting to accept on it would block in accept", f.Name())
		}
	}
}

// An address bound later is one more socket; binding it again returns the
// same one; unbinding it closes it and leaves the others as they were.
func TestBindAddressAndUnbind(t *testing.T) {
	first := v1alpha1.ListenAddress("tcp://127.0.0.1:" + freePort(t))
	set, err := sockets.Bind(context.Background(), []v1alpha1.WorkerGroup{{Name: "web", Listen: []v1alpha1.ListenAddress{first}}})
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	kept := set.Addr(first)
	path := filepath.Join(t.TempDir(), "b.sock")
	added := v1alpha1.ListenAddress("unix://" + path)
	f, err := set.BindAddress(added)
	if err != nil {
		t.Fatalf("BindAddress(%s): %v", added, err)
	}
	if again, err := set.BindAddress(added); err != nil || again != f {
		t.Errorf("BindAddress of a bound address = %v, %v; want the same file", again, err)
	}
	if again, err := set.BindAddress(first); err != nil || again != set.Files()["web"][0] {
		t.Errorf("BindAddress of a first address = %v, %v; want its file", again, err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the added address does not accept: %v", err)
	}
	c.Close()
	if err := set.Unbind(added); err != nil {
		t.Fatalf("Unbind: %v", err)
	}
	if set.Addr(added) != nil {
		t.Error("an unbound address still has an Addr")
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Error("the unbound address still accepts")
	}
	if set.Addr(first) != kept {
		t.Errorf("the first address went from %v to %v", kept, set.Addr(first))
	}
	c, err = net.Dial("tcp", kept.String())
	if err != nil {
		t.Fatalf("the first address stopped accepting: %v", err)
	}
	c.Close()
}
