package local

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// The walkthrough's app (examples/kubernetes), which make demo and the
// end-to-end tests run: a pool of reloadable HTTP workers and a gateway
// that is never reloaded.
const (
	ExamplePool     = "hello"
	ExampleCode     = "hello-code"
	ExampleWebPort  = 8080
	ExampleGWPort   = 9090
	exampleDir      = "examples/kubernetes"
	exampleAppFiles = "worker.py softreload_worker.py gateway.py greeting.txt"
)

// ExampleApp returns the files of the walkthrough's app, as its code
// ConfigMap holds them.
func ExampleApp(root string) (map[string]string, error) {
	files := map[string]string{}
	for _, name := range strings.Fields(exampleAppFiles) {
		b, err := os.ReadFile(filepath.Join(root, exampleDir, "app", name))
		if err != nil {
			return nil, err
		}
		files[name] = string(b)
	}
	return files, nil
}

// ExampleWorkerPool returns the walkthrough's WorkerPool.
func ExampleWorkerPool(root string) (*v1alpha1.WorkerPool, error) {
	path := filepath.Join(root, exampleDir, "workerpool.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := &v1alpha1.WorkerPool{}
	if err := yaml.UnmarshalStrict(b, pool); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pool, nil
}

// PortStep separates the port offsets of the pods that FreePortOffset
// places: pod i serves at offset+PortStep*i.
const PortStep = 100

// FreePortOffset returns an offset at which pods pods, pod i at
// offset+PortStep*i, find each of ports free on 127.0.0.1: 10000 if it can
// (the example's 8080 is then 18080, 18180, ...), else another.
func FreePortOffset(pods int, ports ...int) (int, error) {
	candidates := []int{10000, 20000, 30000, 40000}
	for range 50 {
		candidates = append(candidates, 20000+PortStep*rand.IntN(300))
	}
	for _, offset := range candidates {
		lock, ok := reserve(offset)
		if !ok {
			continue
		}
		if portsFree(offset, pods, ports) {
			reserved = append(reserved, lock)
			return offset, nil
		}
		_ = lock.Close()
	}
	return 0, fmt.Errorf("no port offset leaves ports %v free on %s for %d pods", ports, ListenHost, pods)
}

// reserved holds the lock files of the offsets this process took, open until
// it exits: the kernel drops their locks then, even after a crash.
var reserved []*os.File

// reserve takes offset for this process with an exclusive lock on a file
// named after it, so that two test processes on one machine (go test runs
// packages at once) never both find its ports free before either binds them.
func reserve(offset int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), fmt.Sprintf("softreload-port-offset-%d.lock", offset)), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, false
	}
	return f, true
}

func portsFree(offset, pods int, ports []int) bool {
	for i := range pods {
		for _, p := range ports {
			l, err := net.Listen("tcp", net.JoinHostPort(ListenHost, strconv.Itoa(p+offset+PortStep*i)))
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}

// Gateway is a long-lived connection to the example's gateway, the kind of
// connection a reload must never cut.
type Gateway struct {
	conn net.Conn
	in   *bufio.Reader
	// PID is the gateway process that took the connection.
	PID string
}

// DialGateway connects to the gateway at addr and reads its greeting.
func DialGateway(addr string) (*Gateway, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", addr, err)
	}
	g := &Gateway{conn: conn, in: bufio.NewReader(conn)}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := g.in.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("gateway %s: reading its greeting: %w", addr, err)
	}
	pid, ok := strings.CutPrefix(strings.TrimSpace(line), "gateway ")
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("gateway %s greeted %q, want \"gateway PID\"", addr, line)
	}
	g.PID = pid
	return g, nil
}

// Echo sends a line on the open connection and checks that the same
// gateway process answers it.
func (g *Gateway) Echo(line string) error {
	_ = g.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintln(g.conn, line); err != nil {
		return fmt.Errorf("writing to the gateway: %w", err)
	}
	got, err := g.in.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading from the gateway: %w", err)
	}
	if want := g.PID + ": " + line + "\n"; got != want {
		return fmt.Errorf("gateway answered %q, want %q", got, want)
	}
	return nil
}

// Close closes the connection.
func (g *Gateway) Close() error { return g.conn.Close() }
