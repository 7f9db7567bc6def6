// Command demo is make demo: softreload on this machine, no cluster needed.
// It starts a local control plane (kube-apiserver and etcd), the manager and
// three agent pods running the walkthrough's app (examples/kubernetes), sends
// light traffic, changes the code, and shows the rollout live. Then it stays
// up for you to change the code with kubectl, until Ctrl-C, which stops
// every process it started.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/load"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/testing/envtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const namespace = "default"

// demo is the running demo.
type demo struct {
	cluster  *local.Cluster
	c        client.Client
	pods     []*local.Pod
	load     *load.Generator
	gateways map[string]*local.GatewayClient
	tty      bool
	out      io.Writer
	// drawn is how many lines the live frame takes on a terminal.
	drawn int
	// last is the table last printed, at lastAt, when out is not a
	// terminal.
	last   string
	lastAt time.Time
}

func run(ctx context.Context) (err error) {
	root, err := envtest.RepoRoot()
	if err != nil {
		return err
	}
	app, err := local.ExampleApp(root)
	if err != nil {
		return err
	}
	pool, err := local.ExampleWorkerPool(root)
	if err != nil {
		return err
	}
	if _, err := exec.LookPath("python3"); err != nil {
		return errors.New("the demo's workers are written in Python: install python3 (on Debian: apt-get install python3 python3-websockets)")
	}
	// The agents' workers run python3 by name; the gateway's needs the
	// websockets library.
	if err := local.UsePythonWithWebsockets(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "softreload-demo-")
	if err != nil {
		return err
	}
	d := &demo{out: os.Stdout, tty: term.IsTerminal(int(os.Stdout.Fd())), gateways: map[string]*local.GatewayClient{}}

	d.say("Starting a local control plane (kube-apiserver and etcd) and building the manager and the agent…")
	d.cluster, err = local.Start(ctx, local.Options{Dir: dir, Namespace: namespace})
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	defer func() {
		d.say("\nStopping: the agents drain their workers, then the manager and the control plane stop…")
		if d.load != nil {
			d.load.Stop()
		}
		for _, g := range d.gateways {
			_, _, _ = g.Stop()
		}
		if stopErr := d.cluster.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
		os.RemoveAll(dir)
		d.say("Stopped; no process is left running.")
	}()
	d.c = d.cluster.Client()

	d.say("Creating the code ConfigMap %s and the WorkerPool %s (examples/kubernetes), starting the manager…", local.ExampleCode, local.ExamplePool)
	if err := d.c.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: local.ExampleCode, Namespace: namespace}, Data: app,
	}); err != nil {
		return err
	}
	pool.Namespace = namespace
	if err := d.c.Create(ctx, pool); err != nil {
		return err
	}
	if err := d.cluster.StartManager(); err != nil {
		return err
	}
	labels := map[string]string{"app": "hello", v1alpha1.PoolLabel: local.ExamplePool}
	base, err := local.FreePortOffset(3, local.ExampleWebPort, local.ExampleGWPort)
	if err != nil {
		return err
	}
	for i := range 3 {
		p, err := d.cluster.AddPod(ctx, "hello-"+strconv.Itoa(i), base+local.PortStep*i, labels)
		if err != nil {
			return err
		}
		d.pods = append(d.pods, p)
	}
	d.say("Three agent pods start: each runs 2 reloadable web workers, 2 reloadable business workers, and 1 WebSocket gateway that is never reloaded and forwards its clients' messages to the business workers.")
	for _, p := range d.pods {
		d.say("  %s: web on http://%s/, gateway on ws://%s/", p.Name, p.Addr(local.ExampleWebPort), p.Addr(local.ExampleGWPort))
	}
	if err := d.watch(ctx, "Starting", "", 2*time.Minute); err != nil {
		return err
	}
	var targets []string
	for _, p := range d.pods {
		targets = append(targets, "http://"+p.Addr(local.ExampleWebPort)+"/")
		g, err := local.StartGatewayClient(p.Addr(local.ExampleGWPort), p.Name, wsPause)
		if err != nil {
			return err
		}
		d.gateways[p.Name] = g
	}
	d.load = load.Start(targets, load.Options{Workers: 1, Pause: 50 * time.Millisecond})
	if err := d.show(ctx, "Serving light traffic", 3*time.Second); err != nil {
		return err
	}

	greeting := "Hello, reloaded without a restart"
	d.say("\nChanging greeting.txt in the ConfigMap %s to %q…", local.ExampleCode, greeting)
	cm := &corev1.ConfigMap{}
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: local.ExampleCode}, cm); err != nil {
		return err
	}
	cm.Data["greeting.txt"] = greeting + "\n"
	old := &v1alpha1.WorkerPool{}
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: local.ExamplePool}, old); err != nil {
		return err
	}
	if err := d.c.Update(ctx, cm); err != nil {
		return err
	}
	if err := d.watch(ctx, "Rolling out", old.Status.UpdateRevision, 2*time.Minute); err != nil {
		return err
	}
	d.tryIt(dir, greeting)
	return d.show(ctx, "Up; press Ctrl-C to stop", 0)
}

// watch shows the live table until every pod runs the pool's revision,
// ready, and that revision is not old (or timeout passes).
func (d *demo) watch(ctx context.Context, title, old string, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		rev, done, err := d.frame(ctx, title)
		return done && rev != old, err
	})
	if wait.Interrupted(err) && ctx.Err() == nil {
		return fmt.Errorf("the pods did not all become ready within %v; logs are in %s", timeout, filepath.Join(d.cluster.Dir(), "logs"))
	}
	return err
}

// show shows the live table for d (0: until Ctrl-C).
func (d *demo) show(ctx context.Context, title string, dur time.Duration) error {
	var end <-chan time.Time
	if dur > 0 {
		end = time.After(dur)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if _, _, err := d.frame(ctx, title); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			return nil
		case <-tick.C:
		}
	}
}

// frame prints the table once, and returns the pool's revision and whether
// every pod runs it, ready.
func (d *demo) frame(ctx context.Context, title string) (string, bool, error) {
	pool := &v1alpha1.WorkerPool{}
	if err := d.c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: local.ExamplePool}, pool); err != nil {
		return "", false, err
	}
	pods := &corev1.PodList{}
	if err := d.c.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels{v1alpha1.PoolLabel: local.ExamplePool}); err != nil {
		return "", false, err
	}
	var stats map[string]load.Stats
	if d.load != nil {
		stats = d.load.Snapshot()
	}
	var table, counts strings.Builder
	rev := pool.Status.UpdateRevision
	fmt.Fprintf(&table, "── %s ── pool %s/%s  revision %s  %s\n", title, namespace, pool.Name, short(rev), conditions(pool))
	w := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POD\tDESIRED\tRUNNING\tSTATE\tWORKERS\tNEWEST ANSWER\tGATEWAY: PID, CONNECTIONS (AGENT'S REPORT), NEWEST ANSWER ON OUR WEBSOCKET")
	done := rev != ""
	for _, p := range d.pods {
		desired, st := "", v1alpha1.AgentStatus{}
		for _, pod := range pods.Items {
			if pod.Name != p.Name {
				continue
			}
			desired = pod.Annotations[v1alpha1.DesiredRevisionAnnotation]
			if report, _ := v1alpha1.ParseAgentStatus(pod.Annotations[v1alpha1.StatusAnnotation]); report != nil {
				st = *report
			}
		}
		if desired != rev || st.Running != rev || st.State != v1alpha1.AgentReady {
			done = false
		}
		// The answer's greeting: its revision is in RUNNING.
		answer := local.AnswerGreeting(stats["http://"+p.Addr(local.ExampleWebPort)+"/"].Last)
		if answer == "" {
			answer = "-"
		}
		gw := "-"
		if g := d.gateways[p.Name]; g != nil {
			gw = describeClient(g, connections(st, "gateway"))
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", p.Name, short(desired), short(st.Running), state(st), st.Ready, st.Total, answer, gw)
	}
	w.Flush()
	if stats != nil {
		ok, failed, _ := load.Total(stats)
		fmt.Fprintf(&counts, "requests: %d served, %d failed\n", ok, failed)
	}
	switch {
	case d.tty:
		d.redraw(table.String() + counts.String())
	case table.String() != d.last || time.Since(d.lastAt) > 10*time.Second:
		// A log: print what changed, and the counts now and then.
		fmt.Fprint(d.out, table.String()+counts.String())
		d.last, d.lastAt = table.String(), time.Now()
	}
	return rev, done, nil
}

// redraw replaces the frame drawn last by frame, in place: up as many lines
// as it took, clear to the end of the screen, print. Lines are cut to the
// terminal's width, so that none wraps and the count holds.
func (d *demo) redraw(frame string) {
	width := 0
	if w, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
		width = w - 1
	}
	var b strings.Builder
	if d.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dF", d.drawn)
	}
	b.WriteString("\x1b[J")
	lines := strings.Split(strings.TrimSuffix(frame, "\n"), "\n")
	for _, line := range lines {
		if r := []rune(line); width > 0 && len(r) > width {
			line = string(r[:width])
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprint(d.out, b.String())
	d.drawn = len(lines)
}

// say prints a line below the live table, which stays as it is.
func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
	d.drawn = 0 // the table stays above what was said; the next one goes below
}

// tryIt prints how to drive the demo from another terminal.
func (d *demo) tryIt(dir, greeting string) {
	p := d.pods[0]
	ok, failed, _ := load.Total(d.load.Snapshot())
	held := "every gateway kept its WebSocket connection, whose messages the new code answers"
	// Each client asks every 200ms: its next answer after the rollout's
	// end is the new code's.
	// At most 10s: a gateway that has not switched by then is reported
	// below, which is why the wait's own timeout is no error.
	_ = wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		for _, g := range d.gateways {
			if local.AnswerGreeting(g.Last()) != greeting && g.Err() == nil {
				return false, nil
			}
		}
		return true, nil
	})
	for name, g := range d.gateways {
		if err := g.Err(); err != nil {
			held = fmt.Sprintf("the gateway of %s lost its connection: %v", name, err)
		} else if got := local.AnswerGreeting(g.Last()); got != greeting {
			held = fmt.Sprintf("the gateway of %s kept its connection, but its newest answer is still %q", name, got)
		}
	}
	d.say(`
The rollout is done, one pod and one worker at a time: %d requests served,
%d failed; %s.

Try it yourself, in another terminal:

  export KUBECONFIG=%s
  export PATH=%s:%s:$PATH      # kubectl and the kubectl softreload plugin
  kubectl get workerpools
  kubectl softreload status %s
  kubectl edit configmap %s          # change greeting.txt, save, and watch here
  curl http://%s/
  python3 -m websockets ws://%s/    # type a message: the business code answers
  kubectl softreload history %s
  kubectl softreload rollback %s

Logs of every process are in %s.
Press Ctrl-C to stop everything.
`, ok, failed, held, d.cluster.KubeconfigPath(), filepath.Dir(d.cluster.Kubectl()), d.cluster.BinDir(),
		local.ExamplePool, local.ExampleCode, p.Addr(local.ExampleWebPort), p.Addr(local.ExampleGWPort), local.ExamplePool, local.ExamplePool,
		filepath.Join(dir, "logs"))
}

// connections is what the agent's report says of group's open
// connections: "-" before it counted them.
func connections(st v1alpha1.AgentStatus, group string) string {
	for _, g := range st.Groups {
		if g.Name == group {
			if g.Connections == 1 {
				return "1 connection"
			}
			return fmt.Sprintf("%d connections", g.Connections)
		}
	}
	return "- connections"
}

func short(rev string) string {
	if rev == "" {
		return "-"
	}
	if len(rev) > 8 {
		return rev[:8]
	}
	return rev
}

func state(st v1alpha1.AgentStatus) string {
	if st.State == "" {
		return "Starting"
	}
	return string(st.State)
}

func conditions(pool *v1alpha1.WorkerPool) string {
	var out []string
	for _, c := range pool.Status.Conditions {
		if c.Status == metav1.ConditionTrue {
			out = append(out, c.Type+" ("+c.Reason+")")
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
