package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/softreload/softreload/agent/control"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/local"
	"github.com/softreload/softreload/internal/poolrevision"
	"github.com/softreload/softreload/internal/testing/envtest"
)

// The footprint table: what the agent costs in every pod, measured on the
// binary that the image ships (stripped), for agent run and agent pod.
const (
	footprintWorkers = 3
	footprintReloads = 10
	// settle is how long the agent is left idle before its memory is read:
	// the figure is what it holds while it waits, not a transient of the
	// work just done.
	settle = 5 * time.Second
)

// footprint is one run of a mode, or the median of the runs.
type footprint struct {
	firstWorker    time.Duration // from the agent's exec to its first worker started
	idle, reloaded memory        // idle, and after the reloads
}

// memory is a reading of the agent's /proc/PID/status: its resident set,
// split into the pages of its binary (file-backed) and its heap and stacks
// (anonymous), and its peak resident set.
type memory struct{ rss, file, anon, peak int64 }

// agentRun is one agent process under measurement.
type agentRun struct {
	cmd     *exec.Cmd
	started time.Time
	first   chan time.Time // the first "Worker started" log line
	done    chan struct{}  // closed once the agent exited, with waitErr
	waitErr error
	mu      sync.Mutex
	tail    []string // the agent's last log lines, for errors
}

// startAgentRun starts bin with args and env, and watches its log for the
// first worker started.
func startAgentRun(bin string, args, env []string) (*agentRun, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	r := &agentRun{cmd: cmd, first: make(chan time.Time, 1), done: make(chan struct{})}
	r.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if !seen && strings.Contains(sc.Text(), `msg="Worker started"`) {
				seen = true
				r.first <- time.Now()
			}
			r.mu.Lock()
			r.tail = append(r.tail, sc.Text())
			if len(r.tail) > 20 {
				r.tail = r.tail[1:]
			}
			r.mu.Unlock()
		}
		r.waitErr = cmd.Wait()
		if r.waitErr == nil {
			r.waitErr = errors.New("exit status 0")
		}
		close(r.done)
	}()
	return r, nil
}

// waitFirstWorker returns the time from the agent's start to its first
// worker started.
func (r *agentRun) waitFirstWorker() (time.Duration, error) {
	select {
	case t := <-r.first:
		return t.Sub(r.started), nil
	case <-r.done:
		return 0, fmt.Errorf("the agent exited before starting a worker: %w\n%s", r.waitErr, r.log())
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("no worker started within a minute:\n%s", r.log())
	}
}

func (r *agentRun) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.tail, "\n")
}

// stop drains the agent (SIGTERM) and waits for it, a minute at most.
func (r *agentRun) stop() {
	local.Terminate(r.cmd, r.done, time.Minute)
}

// memory reads the agent's memory.
func (r *agentRun) memory() (memory, error) {
	var m memory
	b, err := os.ReadFile("/proc/" + strconv.Itoa(r.cmd.Process.Pid) + "/status")
	if err != nil {
		return m, err
	}
	fields := map[string]*int64{"VmRSS": &m.rss, "RssFile": &m.file, "RssAnon": &m.anon, "VmHWM": &m.peak}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, _ := strings.Cut(line, ":")
		dst, ok := fields[name]
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			return m, fmt.Errorf("%s in /proc/%d/status has no value", name, r.cmd.Process.Pid)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s in /proc/%d/status: %w", name, r.cmd.Process.Pid, err)
		}
		*dst = kb * 1024
	}
	return m, nil
}

// measureRun takes one run of a mode: start, first worker, idle memory,
// the reloads, memory again.
func measureRun(start func() (*agentRun, error), waitReady func() error, reload func(i int) error) (footprint, error) {
	var f footprint
	r, err := start()
	if err != nil {
		return f, err
	}
	defer r.stop()
	if f.firstWorker, err = r.waitFirstWorker(); err != nil {
		return f, err
	}
	if err := waitReady(); err != nil {
		return f, fmt.Errorf("%w\n%s", err, r.log())
	}
	time.Sleep(settle)
	if f.idle, err = r.memory(); err != nil {
		return f, err
	}
	for i := 1; i <= footprintReloads; i++ {
		if err := reload(i); err != nil {
			return f, fmt.Errorf("reload %d: %w\n%s", i, err, r.log())
		}
	}
	time.Sleep(settle)
	f.reloaded, err = r.memory()
	return f, err
}

// median is the median of the runs, measure by measure.
func median(runs []footprint) footprint {
	mid := func(get func(footprint) int64) int64 {
		v := make([]int64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	mem := func(get func(footprint) memory) memory {
		return memory{
			rss:  mid(func(f footprint) int64 { return get(f).rss }),
			file: mid(func(f footprint) int64 { return get(f).file }),
			anon: mid(func(f footprint) int64 { return get(f).anon }),
			peak: mid(func(f footprint) int64 { return get(f).peak }),
		}
	}
	return footprint{
		firstWorker: time.Duration(mid(func(f footprint) int64 { return int64(f.firstWorker) })),
		idle:        mem(func(f footprint) memory { return f.idle }),
		reloaded:    mem(func(f footprint) memory { return f.reloaded }),
	}
}

// footprintBench builds the agent as its image does, measures both modes
// runs times each and prints the table.
func footprintBench(src, dir string, runs int, agentEnv []string) error {
	bins := filepath.Join(dir, "footprint")
	agentBin := filepath.Join(bins, "agent")
	if err := goBuild(src, agentBin, "./cmd/agent", "-trimpath", "-ldflags=-s -w"); err != nil {
		return err
	}
	worker := filepath.Join(bins, "go-worker")
	if err := goBuild(src, worker, "./examples/go"); err != nil {
		return err
	}
	binSize, err := fileSize(agentBin)
	if err != nil {
		return err
	}
	imageSize, err := buildImage(src, filepath.Join(dir, "image"))
	if err != nil {
		return err
	}

	var standalone, inPod []footprint
	for i := 0; i < runs; i++ {
		f, err := standaloneRun(agentBin, worker, filepath.Join(dir, fmt.Sprintf("standalone-%d", i)), agentEnv)
		if err != nil {
			return fmt.Errorf("agent run: %w", err)
		}
		standalone = append(standalone, f)
	}
	crlog.SetLogger(logr.Discard())
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() { _ = env.Stop() }()
	for i := 0; i < runs; i++ {
		f, err := podRun(env, agentBin, worker, filepath.Join(dir, fmt.Sprintf("pod-%d", i)), agentEnv)
		if err != nil {
			return fmt.Errorf("agent pod: %w", err)
		}
		inPod = append(inPod, f)
	}

	s, p := median(standalone), median(inPod)
	fmt.Printf("\nAgent footprint: %d workers (examples/go), %d reloads, the stripped binary the image ships, median of %d runs per mode;\n"+
		"memory is resident (VmRSS) after %s idle; agent pod runs against the test control plane (kube-apiserver, etcd)", footprintWorkers, footprintReloads, runs, settle)
	if len(agentEnv) > 0 {
		fmt.Printf("; agent environment: %s", strings.Join(agentEnv, " "))
	}
	fmt.Print("\n\n")
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tagent run (standalone)\tagent pod\t")
	fmt.Fprintf(tw, "start to first worker started\t%s\t%s\t\n", ms(s.firstWorker), ms(p.firstWorker))
	rows := []struct {
		name string
		get  func(footprint) int64
	}{
		{"resident memory, idle", func(f footprint) int64 { return f.idle.rss }},
		{"  the binary's pages (RssFile)", func(f footprint) int64 { return f.idle.file }},
		{"  heap, stacks (RssAnon)", func(f footprint) int64 { return f.idle.anon }},
		{fmt.Sprintf("resident memory, after %d reloads", footprintReloads), func(f footprint) int64 { return f.reloaded.rss }},
		{"  the binary's pages (RssFile)", func(f footprint) int64 { return f.reloaded.file }},
		{"  heap, stacks (RssAnon)", func(f footprint) int64 { return f.reloaded.anon }},
		{"peak resident memory (VmHWM)", func(f footprint) int64 { return f.reloaded.peak }},
	}
	for _, row := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", row.name, mib(row.get(s)), mib(row.get(p)))
	}
	fmt.Fprintf(tw, "agent binary, stripped\t%s\t\t\n", mb(binSize))
	fmt.Fprintf(tw, "agent image, %s/%s, compressed\t%s\t\t\n", runtime.GOOS, runtime.GOARCH, mb(imageSize))
	return tw.Flush()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
func mb(n int64) string  { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// goBuild builds pkg of the module in src into out, static as the images
// build it.
func goBuild(src, out, pkg string, flags ...string) error {
	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, pkg)...)
	cmd.Dir, cmd.Stderr = src, os.Stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building %s in %s: %w", pkg, src, err)
	}
	return nil
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// buildImage builds the agent image for this machine's platform with
// hack/image, as make images does, and returns the archive's size: the
// compressed layer and the image's small JSON documents.
func buildImage(src, out string) (int64, error) {
	cmd := exec.Command("go", "run", "./hack/image", "-out", out, "-tag", "bench",
		"-platforms", runtime.GOOS+"/"+runtime.GOARCH, "agent=./cmd/agent")
	cmd.Dir, cmd.Stdout, cmd.Stderr = src, io.Discard, os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("building the agent image: %w", err)
	}
	return fileSize(filepath.Join(out, "agent.tar"))
}

// standaloneRun measures agent run: its workers, each reload through the
// control socket.
func standaloneRun(agentBin, worker, dir string, agentEnv []string) (footprint, error) {
	code := filepath.Join(dir, "code")
	if err := os.MkdirAll(code, 0o755); err != nil {
		return footprint{}, err
	}
	if err := os.WriteFile(filepath.Join(code, "RELEASE"), []byte("0"), 0o644); err != nil {
		return footprint{}, err
	}
	addr, err := freeAddr()
	if err != nil {
		return footprint{}, err
	}
	sock := filepath.Join(dir, "c.sock")
	cfg := fmt.Sprintf(`codeDir: code
stateDir: state
controlSocket: %s
groups:
  - name: web
    command: [%q]
    count: %d
    listen: ["tcp://%s"]
    readiness: {type: Notify, timeoutSeconds: 60}
`, sock, worker, footprintWorkers, addr)
	path := filepath.Join(dir, "pool.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return footprint{}, err
	}
	client := control.NewClient(sock)
	return measureRun(
		func() (*agentRun, error) { return startAgentRun(agentBin, []string{"run", "--config", path}, agentEnv) },
		func() error { return waitAgentReady(client, footprintWorkers) },
		func(i int) error {
			if err := os.WriteFile(filepath.Join(code, "RELEASE"), []byte(strconv.Itoa(i)), 0o644); err != nil {
				return err
			}
			r, err := client.Reload(context.Background(), true)
			if err != nil {
				return err
			}
			if r.Error != "" {
				return errors.New(r.Error)
			}
			return nil
		})
}

// podRun measures agent pod against the control plane of env: a Pod
// object told its revision as the webhook does, then a new revision ten
// times, as the controller does, each snapshot made beforehand.
func podRun(env *envtest.Env, agentBin, worker, dir string, agentEnv []string) (footprint, error) {
	ctx := context.Background()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return footprint{}, err
	}
	kube, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return footprint{}, err
	}
	ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "footprint-"}}, metav1.CreateOptions{})
	if err != nil {
		return footprint{}, err
	}
	addr, err := freeAddr()
	if err != nil {
		return footprint{}, err
	}
	spec := poolrevision.Spec{Groups: []v1alpha1.WorkerGroup{{
		Name: "web", Command: []string{worker}, Count: footprintWorkers,
		Listen:    []v1alpha1.ListenAddress{v1alpha1.ListenAddress("tcp://" + addr)},
		Readiness: v1alpha1.Readiness{Type: v1alpha1.ReadinessNotify, TimeoutSeconds: 60},
	}}}
	pool := &v1alpha1.WorkerPool{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns.Name, UID: "footprint"}}
	for i := 0; i <= footprintReloads; i++ {
		cm, err := poolrevision.NewSnapshot(pool, revName(i), spec, poolrevision.Code{Data: map[string]string{"RELEASE": strconv.Itoa(i)}})
		if err != nil {
			return footprint{}, err
		}
		if _, err := kube.CoreV1().ConfigMaps(ns.Name).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return footprint{}, fmt.Errorf("creating snapshot %s: %w", cm.Name, err)
		}
	}
	const name = "web-0"
	if _, err := kube.CoreV1().Pods(ns.Name).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{v1alpha1.DesiredRevisionAnnotation: revName(0)}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
	}, metav1.CreateOptions{}); err != nil {
		return footprint{}, err
	}
	user, err := env.Environment().AddUser(crenvtest.User{Name: "footprint-agent", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return footprint{}, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return footprint{}, err
	}
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return footprint{}, err
	}
	podEnv := append([]string{
		"POD_NAME=" + name, "POD_NAMESPACE=" + ns.Name, "SOFTRELOAD_POOL=" + pool.Name,
		"SOFTRELOAD_CODE_ROOT=" + filepath.Join(dir, "code"),
	}, agentEnv...)
	return measureRun(
		func() (*agentRun, error) {
			return startAgentRun(agentBin, []string{"pod", "--kubeconfig", kubeconfigPath}, podEnv)
		},
		func() error { return waitPodReady(ctx, kube, ns.Name, name, revName(0)) },
		func(i int) error {
			patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{v1alpha1.DesiredRevisionAnnotation: revName(i)}}})
			if err != nil {
				return err
			}
			if _, err := kube.CoreV1().Pods(ns.Name).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return err
			}
			return waitPodReady(ctx, kube, ns.Name, name, revName(i))
		})
}

func revName(i int) string { return "r" + strconv.Itoa(i) }

// waitPodReady watches the pod until its agent reports rev Ready with
// every worker ready.
func waitPodReady(ctx context.Context, kube kubernetes.Interface, ns, name, rev string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	w, err := kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		return err
	}
	defer w.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s did not report %s ready; its last report: %s", ns, name, rev, last)
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the watch of pod %s/%s ended; its last report: %s", ns, name, last)
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod || ev.Type == watch.Deleted {
				continue
			}
			last = p.Annotations[v1alpha1.StatusAnnotation]
			st, err := v1alpha1.ParseAgentStatus(last)
			if err == nil && st != nil && st.Revision == rev && st.State == v1alpha1.AgentReady && st.Ready == footprintWorkers {
				return nil
			}
		}
	}
}
