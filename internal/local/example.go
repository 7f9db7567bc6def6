package local

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
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
	exampleAppFiles = "worker.py softreload_worker.py gateway.py business.py greeting.txt"
)

// BrokenBusiness is a line that, put before the example's business code,
// makes its workers exit at start: a broken revision of the business group.
const BrokenBusiness = "raise SystemExit('this revision is broken on purpose')\n"

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

// Gateway is a client's WebSocket connection to the example's gateway,
// the kind of connection a reload must never cut: the gateway (never
// reloaded) holds it and forwards each message to the reloadable business
// workers, whose answer comes back on it.
//
// It reads the connection all the time, as a browser does: the gateway
// pings its clients (websockets' keepalive, every 20 s) and closes a
// connection whose pong does not come, which a client only sends while it
// reads.
type Gateway struct {
	conn    *websocket.Conn
	answers chan gatewayRead
	stop    context.CancelFunc
	// PID is the gateway process that took the connection, and Host its
	// host name (in a pod, the pod's name).
	PID, Host string
}

// gatewayRead is one message read from the gateway, or the error that
// ended the connection.
type gatewayRead struct {
	text string
	err  error
}

// gatewayTimeout bounds one exchange with a gateway; a loaded machine is
// slow, not failing.
const gatewayTimeout = time.Minute

// DialGateway opens a WebSocket connection to the gateway at addr
// (host:port) and reads its greeting, "gateway PID on HOST".
func DialGateway(addr string) (*Gateway, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTimeout)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", addr, err)
	}
	life, stop := context.WithCancel(context.Background())
	g := &Gateway{conn: conn, answers: make(chan gatewayRead, 16), stop: stop}
	go g.read(life)
	greeting, err := g.next()
	if err != nil {
		_ = g.Close()
		return nil, fmt.Errorf("gateway %s: reading its greeting: %w", addr, err)
	}
	if _, err := fmt.Sscanf(greeting, "gateway %s on %s", &g.PID, &g.Host); err != nil {
		_ = g.Close()
		return nil, fmt.Errorf("gateway %s greeted %q, want \"gateway PID on HOST\"", addr, greeting)
	}
	return g, nil
}

// read reads every message of the connection into g.answers, until the
// connection ends.
func (g *Gateway) read(ctx context.Context) {
	defer close(g.answers)
	for {
		_, b, err := g.conn.Read(ctx)
		select {
		case g.answers <- gatewayRead{text: string(b), err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// next returns the next message of the gateway.
func (g *Gateway) next() (string, error) {
	select {
	case r, ok := <-g.answers:
		if !ok {
			return "", errors.New("the connection has ended")
		}
		return r.text, r.err
	case <-time.After(gatewayTimeout):
		return "", fmt.Errorf("no message from the gateway within %v", gatewayTimeout)
	}
}

// Ask sends message on the open connection and returns the answer of the
// business workers, "GREETING (revision REV): MESSAGE"; an answer to
// anything else (another message, an error of the gateway) is an error.
func (g *Gateway) Ask(message string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gatewayTimeout)
	defer cancel()
	if err := g.conn.Write(ctx, websocket.MessageText, []byte(message)); err != nil {
		return "", fmt.Errorf("writing to the gateway: %w", err)
	}
	answer, err := g.next()
	if err != nil {
		return "", fmt.Errorf("reading from the gateway: %w", err)
	}
	if !strings.HasSuffix(answer, "): "+message) {
		return answer, fmt.Errorf("the gateway answered %q to %q", answer, message)
	}
	return answer, nil
}

// Echo sends a line on the open connection and checks that it is answered.
func (g *Gateway) Echo(line string) error {
	_, err := g.Ask(line)
	return err
}

// AnswerRevision returns the revision an answer of the example's business
// code names, "" if none.
func AnswerRevision(answer string) string {
	_, rest, ok := strings.Cut(answer, "(revision ")
	if !ok {
		return ""
	}
	rev, _, _ := strings.Cut(rest, ")")
	return rev
}

// AnswerGreeting returns the greeting of an answer of the example's code,
// the answer without its revision.
func AnswerGreeting(answer string) string {
	greeting, _, _ := strings.Cut(answer, " (revision ")
	return greeting
}

// Close closes the connection as a client that leaves does.
func (g *Gateway) Close() error {
	err := g.conn.Close(websocket.StatusNormalClosure, "")
	g.stop()
	return err
}
