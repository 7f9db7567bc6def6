package worker_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/worker"
)

// childEnv makes the test binary a worker process: its value says what to
// do (see runChild).
const childEnv = "WORKER_TEST_CHILD"

// runChild is the worker process of the specs below. Like the agent's
// shim, it sets LISTEN_PID to its own pid (known only after fork), then
// prints what the library sees, one line per socket, and answers one
// connection on the socket it names.
func runChild(what string) {
	if os.Getenv("SET_LISTEN_PID") == "1" {
		os.Setenv(worker.EnvListenPID, strconv.Itoa(os.Getpid()))
	}
	switch {
	case what == "list":
		ls, err := worker.Listeners()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		for _, l := range ls {
			fmt.Printf("%s %s\n", l.Name, l.Addr())
		}
	case strings.HasPrefix(what, "name="):
		l, err := worker.Listener(strings.TrimPrefix(what, "name="))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		fmt.Println(l.Addr())
	}
	os.Exit(0)
}

// startChild runs the test binary as a worker given the listeners, as the
// agent passes them (fd 3, 4, ...), and returns its output.
func startChild(what string, env []string, ls ...*net.TCPListener) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestWorker$")
	cmd.Env = append(os.Environ(), childEnv+"="+what)
	cmd.Env = append(cmd.Env, env...)
	for _, l := range ls {
		f, err := l.File()
		Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	}
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	return strings.TrimSpace(string(out))
}

func listenTCP() *net.TCPListener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(l.Close)
	return l.(*net.TCPListener)
}

var _ = Describe("Inherited sockets", func() {
	It("are taken from fd 3 on, with their LISTEN_FDNAMES", func() {
		a, b := listenTCP(), listenTCP()
		out := startChild("list", []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=web-0:admin-0", "SET_LISTEN_PID=1"}, a, b)
		Expect(out).To(Equal(fmt.Sprintf("web-0 %s\nadmin-0 %s", a.Addr(), b.Addr())))
	})

	It("are found by name", func() {
		a, b := listenTCP(), listenTCP()
		env := []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=web-0:admin-0", "SET_LISTEN_PID=1"}
		Expect(startChild("name=admin-0", env, a, b)).To(Equal(b.Addr().String()))
		Expect(startChild("name=metrics-0", env, a, b)).To(Equal(`error: no inherited socket named "metrics-0" (LISTEN_FDNAMES has web-0, admin-0)`))
	})

	It("are not taken when LISTEN_PID names another process", func() {
		a := listenTCP()
		out := startChild("list", []string{"LISTEN_FDS=1", "LISTEN_PID=1"}, a)
		Expect(out).To(HavePrefix("error: no sockets passed"))
	})

	It("are refused with a clear error when LISTEN_FDS is not a number", func() {
		a := listenTCP()
		out := startChild("list", []string{"LISTEN_FDS=two", "SET_LISTEN_PID=1"}, a)
		Expect(out).To(Equal(`error: LISTEN_FDS="two" is not a number of sockets`))
	})
})

var _ = Describe("Self", func() {
	It("reads the worker's identity", func() {
		GinkgoT().Setenv(worker.EnvGroup, "web")
		GinkgoT().Setenv(worker.EnvWorkerID, "2")
		GinkgoT().Setenv(worker.EnvRevision, "ae7fd0d0c7b0")
		GinkgoT().Setenv(worker.EnvCodeDir, "/state/ae7fd0d0c7b0")
		Expect(worker.Self()).To(Equal(worker.Identity{Group: "web", ID: 2, Revision: "ae7fd0d0c7b0", CodeDir: "/state/ae7fd0d0c7b0"}))
	})

	It("says ID -1 outside the agent", func() {
		GinkgoT().Setenv(worker.EnvWorkerID, "")
		Expect(worker.Self()).To(HaveField("ID", -1))
	})

	It("names a bad worker slot", func() {
		GinkgoT().Setenv(worker.EnvWorkerID, "x")
		_, err := worker.Self()
		Expect(err).To(MatchError(`SOFTRELOAD_WORKER_ID="x" is not a worker slot (0, 1, ...)`))
	})
})

var _ = Describe("Notify", func() {
	It("sends the state to NOTIFY_SOCKET", func() {
		sock := notifySocket()
		Expect(worker.Ready()).To(Succeed())
		Eventually(sock).Should(Receive(Equal("READY=1")))
	})

	It("does nothing without NOTIFY_SOCKET", func() {
		GinkgoT().Setenv(worker.EnvNotifySocket, "")
		Expect(worker.Ready()).To(Succeed())
	})
})

// notifySocket listens on a NOTIFY_SOCKET of its own for the spec and
// returns what arrives on it.
func notifySocket() <-chan string {
	path := GinkgoT().TempDir() + "/notify.sock"
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.Close)
	GinkgoT().Setenv(worker.EnvNotifySocket, path)
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}
