package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/softreload/softreload/internal/procstat"
)

// envDir names the cluster's state directory in the environment of the
// test binary that runs inside the namespaces; outside it is unset.
const envDir = "SOFTRELOAD_REALNODE_DIR"

// EnvKeepLogs names the variable that, set to any value, keeps the logs of every process of the
// cluster after the run (a failure prints their ends anyway).
const EnvKeepLogs = "SOFTRELOAD_REALNODE_KEEP_LOGS"

// hostSysctls are the global sysctls the kubelet sets: Main puts back what
// it found. (The network ones, such as net.ipv4.ip_forward, belong to the
// test's network namespace and go with it.)
var hostSysctls = []string{
	"kernel.panic", "kernel.panic_on_oops", "vm.overcommit_memory", "vm.panic_on_oom",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
}

// hostPaths are host paths a kubelet or containerd uses by default. The
// cluster is configured to keep out of them (or sees a tmpfs there, in its
// mount namespace); Main checks that none appeared.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/lib/containerd", "/var/lib/cni", "/var/log/pods", "/var/log/containers",
	"/etc/cni", "/opt/cni", "/opt/containerd", "/run/containerd", "/run/netns", "/etc/kubernetes",
	"/usr/libexec/kubernetes",
}

// privateMounts get a tmpfs in the test's mount namespace: paths the
// kubelet, containerd and the CNI plugins write to whatever their
// configuration says (/var/log/containers, /run/containerd/s for the shims'
// sockets, /run/netns, /var/lib/cni).
var privateMounts = []string{"/run", "/var/lib", "/var/log"}

// Main runs the tests of m in a network and a mount namespace of their own,
// and leaves the host as it found it; TestMain calls it:
//
//	func TestMain(m *testing.M) { os.Exit(node.Main(m)) }
//
// Outside, it re-executes the test binary in new namespaces (as root),
// waits for it, then stops every process the cluster left (by PID: every
// descendant, and everything in the test's network namespace), removes the
// cgroups they made, puts the kubelet's sysctls back, removes the state
// directory (keeping its logs if EnvKeepLogs is set) and returns the exit
// code. Inside, it makes every mount private and runs m.
func Main(m *testing.M) int {
	if os.Getenv(envDir) != "" {
		if err := privateMountNamespace(); err != nil {
			fmt.Fprintln(os.Stderr, "realnode:", err)
			return 1
		}
		return m.Run()
	}
	code, err := runIsolated()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realnode:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Dir is the state directory of the cluster, inside the namespaces.
func Dir() string { return os.Getenv(envDir) }

// privateMountNamespace makes every mount of the new mount namespace
// private, so that nothing mounted here reaches the host, and mounts a
// tmpfs over privateMounts.
func privateMountNamespace() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private in the test's mount namespace: %w", err)
	}
	for _, p := range privateMounts {
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("mounting a tmpfs on %s in the test's mount namespace: %w", p, err)
		}
	}
	return nil
}

// hostState is what the cluster may change on the host, as found.
type hostState struct {
	sysctls map[string]string
	cgroups map[string]bool
	paths   map[string]bool
}

func recordHost() (*hostState, error) {
	h := &hostState{sysctls: map[string]string{}, paths: map[string]bool{}}
	for _, name := range hostSysctls {
		v, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			return nil, fmt.Errorf("reading sysctl %s: %w", name, err)
		}
		h.sysctls[name] = strings.TrimSpace(string(v))
	}
	var err error
	if h.cgroups, err = cgroupDirs(); err != nil {
		return nil, err
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil {
			h.paths[p] = true
		}
	}
	return h, nil
}

func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// clusterCgroups are the names of the cgroups the kubelet (cgroupfs
// driver) and containerd make at the top of each hierarchy. Only those are
// removed: other processes of the machine may make cgroups meanwhile.
var clusterCgroups = []string{"kubepods", "kubepods.slice", "k8s.io", "podruntime", "system.slice"}

// cgroupDirs lists the top-level cgroups of every hierarchy mounted under
// /sys/fs/cgroup.
func cgroupDirs() (map[string]bool, error) {
	out := map[string]bool{}
	hierarchies, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return nil, fmt.Errorf("listing the cgroup hierarchies: %w", err)
	}
	for _, h := range hierarchies {
		root := filepath.Join("/sys/fs/cgroup", h.Name())
		entries, err := os.ReadDir(root)
		if err != nil {
			continue // a file or a link such as cpu,cpuacct
		}
		for _, e := range entries {
			if e.IsDir() {
				out[filepath.Join(root, e.Name())] = true
			}
		}
	}
	return out, nil
}

// runIsolated is Main outside: see Main.
func runIsolated() (int, error) {
	if os.Geteuid() != 0 {
		return 1, errors.New("the real-node test runs as root on Linux: it creates namespaces and runs containerd and a kubelet (sudo make test-node)")
	}
	host, err := recordHost()
	if err != nil {
		return 1, err
	}
	dir, err := os.MkdirTemp("", "softreload-realnode-")
	if err != nil {
		return 1, err
	}
	// Orphans of the cluster (containerd's shims, which daemonize) become
	// children of this process, so that it can stop and reap them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return 1, fmt.Errorf("becoming a subreaper: %w", err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	exe, err := os.Executable()
	if err != nil {
		return 1, err
	}
	proc, err := os.StartProcess(exe, os.Args, &os.ProcAttr{
		Env:   append(os.Environ(), envDir+"="+dir),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS,
			Pdeathsig:  syscall.SIGKILL,
		},
	})
	if err != nil {
		return 1, fmt.Errorf("starting the test in new network and mount namespaces: %w", err)
	}
	netns, err := namespaceOf(proc.Pid)
	if err != nil {
		_ = proc.Kill()
	}
	go forwardSignals(sigs, proc)
	code := waitChild(proc.Pid)

	var errs []error
	if err != nil {
		errs = append(errs, err)
	} else if err := stopLeftovers(netns); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, host.restore())
	if os.Getenv(EnvKeepLogs) != "" {
		errs = append(errs, keepLogs(dir))
	} else {
		errs = append(errs, os.RemoveAll(dir))
	}
	return code, errors.Join(errs...)
}

// namespaceOf is the network namespace of process pid, as its
// /proc/PID/ns/net link reads.
func namespaceOf(pid int) (string, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return "", fmt.Errorf("the test's network namespace: %w", err)
	}
	return ns, nil
}

// forwardSignals passes SIGTERM on to the tests (a terminal's Ctrl-C
// reaches them itself); a second signal kills them.
func forwardSignals(sigs <-chan os.Signal, proc *os.Process) {
	n := 0
	for s := range sigs {
		n++
		switch {
		case n > 1:
			_ = proc.Kill()
		case s == syscall.SIGTERM:
			_ = proc.Signal(syscall.SIGTERM)
		}
	}
}

// waitChild reaps every child of this process (a subreaper) until pid
// exits, and returns its exit code.
func waitChild(pid int) int {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 1
		}
		if got != pid {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			return 128 + int(ws.Signal())
		}
	}
}

// stopLeftovers kills, by PID, every process left by the cluster: every
// descendant of this process and everything in the test's network
// namespace netns. It reaps them and waits until none is left.
func stopLeftovers(netns string) error {
	var left []int
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if left = leftovers(netns); len(left) == 0 {
			return true, nil
		}
		for _, pid := range left {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		reapAll()
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("processes of the cluster still running after SIGKILL: %v (%w)", left, err)
	}
	return nil
}

// reapAll reaps every child that has exited, without blocking.
func reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// leftovers are the PIDs of this process's descendants and of the
// processes in network namespace netns.
func leftovers(netns string) []int {
	self := os.Getpid()
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	var inNS []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if st, err := procstat.Read(pid); err == nil {
			parent[pid] = st.PPid
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && ns == netns {
			inNS = append(inNS, pid)
		}
	}
	var out []int
	for pid := range parent {
		for p, n := parent[pid], 0; p > 1 && n < 64; p, n = parent[p], n+1 {
			if p == self {
				out = append(out, pid)
				break
			}
		}
	}
	for _, pid := range inNS {
		if !slices.Contains(out, pid) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// restore removes the cgroups made since h was recorded, writes back the
// sysctls that changed, and checks that no default path of the kubelet or
// containerd appeared on the host.
func (h *hostState) restore() error {
	var errs []error
	if err := h.removeCgroups(); err != nil {
		errs = append(errs, err)
	}
	for _, name := range hostSysctls {
		v, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			errs = append(errs, fmt.Errorf("reading sysctl %s: %w", name, err))
			continue
		}
		if got := strings.TrimSpace(string(v)); got != h.sysctls[name] {
			if err := os.WriteFile(sysctlPath(name), []byte(h.sysctls[name]), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restoring sysctl %s from %s to %s: %w", name, got, h.sysctls[name], err))
			} else {
				fmt.Fprintf(os.Stderr, "realnode: sysctl %s put back from %s to %s\n", name, got, h.sysctls[name])
			}
		}
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); err == nil && !h.paths[p] {
			errs = append(errs, fmt.Errorf("the cluster left %s on the host", p))
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the cgroups of the cluster (clusterCgroups) that
// did not exist when h was recorded, with every cgroup under them, the
// deepest first. A cgroup whose last process has just been killed may be
// busy for a moment: it is retried.
func (h *hostState) removeCgroups() error {
	now, err := cgroupDirs()
	if err != nil {
		return err
	}
	var tops []string
	for p := range now {
		if !h.cgroups[p] && slices.Contains(clusterCgroups, filepath.Base(p)) {
			tops = append(tops, p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, top := range tops {
		var last error
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			last = removeTree(top)
			return last == nil, nil
		})
		if err != nil {
			return fmt.Errorf("removing cgroup %s: %w (%w)", top, last, err)
		}
	}
	return nil
}

// removeTree removes the cgroup dir and every cgroup under it, the deepest
// first.
func removeTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing cgroup %s: %w", dir, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
		}
	}
	return nil
}

// keepLogs removes the state directory but its logs, whose path it
// prints.
func keepLogs(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if e.Name() != "logs" {
			errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
		}
	}
	fmt.Fprintf(os.Stderr, "realnode: the logs of every process are kept in %s\n", filepath.Join(dir, "logs"))
	return errors.Join(errs...)
}
