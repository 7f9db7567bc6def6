package process_test

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/api/v1alpha1"
)

// TestConnections counts, on real sockets, the connections this process
// accepted on a tcp and a unix listener: not the listeners, not the
// clients' ends (which this process holds too), not another listener's.
func TestConnections(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	path := filepath.Join(t.TempDir(), "app.sock")
	unix, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	accept := func(l net.Listener, n int) []net.Conn {
		var conns []net.Conn
		for range n {
			c, err := net.Dial(l.Addr().Network(), l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			a, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, a)
		}
		return conns
	}
	accepted := accept(tcp, 3)
	accepted = append(accepted, accept(unix, 2)...)
	accepted = append(accepted, accept(other, 4)...)
	defer func() {
		for _, c := range accepted {
			c.Close()
		}
	}()
	listen := []v1alpha1.ListenAddress{
		v1alpha1.ListenAddress("tcp://0.0.0.0:" + strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)),
		v1alpha1.ListenAddress("unix://" + path),
	}
	me := []int{os.Getpid()}
	if got, err := process.Connections(me, listen); err != nil || got != 5 {
		t.Errorf("Connections = %d, %v; want 5 (3 tcp, 2 unix)", got, err)
	}
	accepted[1].Close() // the first tcp connection, its accepted end
	if got, err := process.Connections(me, listen); err != nil || got != 4 {
		t.Errorf("Connections after one closed = %d, %v; want 4", got, err)
	}
	if got, err := process.Connections([]int{1 << 30}, listen); err != nil || got != 0 {
		t.Errorf("Connections of no process = %d, %v; want 0", got, err)
	}
	if _, err := process.Connections(me, []v1alpha1.ListenAddress{"udp://x"}); err == nil {
		t.Error("Connections of a bad address: no error")
	}
}
