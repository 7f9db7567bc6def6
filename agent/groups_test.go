package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/softreload/softreload/agent/config"
	"github.com/softreload/softreload/agent/testworker"
	"github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/testing/suite"
)

// filePool is a running agent whose groups come from a config file that
// the spec rewrites, as a user edits pool.yaml before `agent reload`.
type filePool struct {
	*pool
	file, stateDir, socket string
}

// startFilePool writes groups into a config file and runs an agent of it
// until the spec ends.
func startFilePool(groups ...v1alpha1.WorkerGroup) *filePool {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	sock, err := os.MkdirTemp("", "sr")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, sock)
	p := &filePool{
		pool: &pool{code: GinkgoT().TempDir(), out: &testworker.Output{}, runErr: make(chan error, 1)},
		file: filepath.Join(dir, "pool.yaml"), stateDir: GinkgoT().TempDir(), socket: filepath.Join(sock, "c.sock"),
	}
	p.write("version", "1")
	p.writeConfig(groups...)
	cfg, err := config.Load(p.file)
	Expect(err).NotTo(HaveOccurred(), "the spec's config")
	p.run(cfg, 100*time.Millisecond, false, true)
	return p
}

// writeConfig writes the config file with groups.
func (p *filePool) writeConfig(groups ...v1alpha1.WorkerGroup) {
	GinkgoHelper()
	b, err := yaml.Marshal(config.Config{CodeDir: p.code, StateDir: p.stateDir, ControlSocket: p.socket, Groups: groups})
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(p.file, b, 0o644)).To(Succeed())
}

// change rewrites the config file with groups and reloads the agent, which
// must end Ready with every worker ready.
func (p *filePool) change(groups ...v1alpha1.WorkerGroup) v1alpha1.AgentStatus {
	GinkgoHelper()
	p.writeConfig(groups...)
	st, err := p.agent.Reload(context.Background())
	Expect(err).NotTo(HaveOccurred(), "the reload of the changed config")
	Expect(st.State).To(Equal(v1alpha1.AgentReady), "status after the change: %+v", st)
	Expect(st.Ready).To(Equal(st.Total), "status after the change: %+v", st)
	return st
}

// gatewayConn is a long-lived connection to a gateway, kept across the
// changes; ask sends a request on it and returns the answer.
type gatewayConn struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialGateway(p *pool) *gatewayConn {
	GinkgoHelper()
	conn, err := net.Dial("tcp", p.agent.Addrs("gateway")[0].String())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return &gatewayConn{conn: conn, br: bufio.NewReader(conn)}
}

func (c *gatewayConn) ask() string {
	GinkgoHelper()
	Expect(c.conn.SetDeadline(time.Now().Add(wait))).To(Succeed())
	_, err := io.WriteString(c.conn, "GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
	Expect(err).NotTo(HaveOccurred(), "writing on the long-lived connection")
	resp, err := http.ReadResponse(c.br, nil)
	Expect(err).NotTo(HaveOccurred(), "reading on the long-lived connection")
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return string(b)
}

// listenInode is the inode of the socket listening on addr (tcp, on
// loopback), from /proc/net/tcp: the same inode is the same socket, and so
// the same accept queue.
func listenInode(addr net.Addr) string {
	GinkgoHelper()
	a := addr.(*net.TCPAddr)
	local := fmt.Sprintf("0100007F:%04X", a.Port)
	b, err := os.ReadFile("/proc/net/tcp")
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local && f[3] == "0A" { // 0A: LISTEN
			return f[9]
		}
	}
	Fail(fmt.Sprintf("no socket listens on %s", addr))
	return ""
}

// holds reports whether process pid holds the socket of inode.
func holds(pid int, inode string) bool {
	GinkgoHelper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	Expect(err).NotTo(HaveOccurred(), "worker %d's fds", pid)
	for _, fd := range fds {
		if link, _ := os.Readlink(filepath.Join(dir, fd.Name())); link == "socket:["+inode+"]" {
			return true
		}
	}
	return false
}

// unixGet sends a request over the unix socket at path.
func unixGet(path string) (string, error) {
	c := &http.Client{Timeout: wait, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	resp, err := c.Get("http://unix/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func gateway() v1alpha1.WorkerGroup {
	return testGroup("gateway", 1, func(g *v1alpha1.WorkerGroup) { g.Reloadable = ptr.To(false) })
}

// Slow: each spec runs a load generator through group changes; together
// they took a quarter of the CPU of go test -short.
var _ = Describe("Group changes in place, under load", Label(suite.Slow), func() {
	var (
		p       *filePool
		web, gw v1alpha1.WorkerGroup
		conn    *gatewayConn
		first   string
		gwPids  []int
	)
	BeforeEach(func() {
		web, gw = testGroup("web", 2), gateway()
		p = startFilePool(web, gw)
		conn = dialGateway(p.pool)
		first = conn.ask()
		gwPids = p.agent.Status().PIDs("gateway")
	})
	// gatewayKept checks that the gateway kept its processes and its
	// long-lived connection.
	gatewayKept := func() {
		GinkgoHelper()
		Expect(p.agent.Status().PIDs("gateway")).To(Equal(gwPids), "the gateway's pids")
		Expect(conn.ask()).To(Equal(first), "the long-lived connection's answer (same worker)")
	}

	It("scales a group 2 to 4 to 1", func() {
		load := startLoad(p.url("web"), 4)
		before := p.agent.Status().PIDs("web")
		inode := listenInode(p.agent.Addrs("web")[0])
		Expect(holds(before[0], inode)).To(BeTrue(), "a worker does not hold the agent's socket")

		web.Count = 4
		st := p.change(web, gw)
		Expect(st.Total).To(BeEquivalentTo(5))
		after := p.agent.Status().PIDs("web")
		Expect(after).To(HaveLen(4))
		Expect(after[:2]).To(Equal(before), "the workers that were there kept running")
		Expect(holds(after[3], inode)).To(BeTrue(), "a new worker does not hold the socket the others accept from")
		Expect(listenInode(p.agent.Addrs("web")[0])).To(Equal(inode), "the socket of the address")

		web.Count = 1
		st = p.change(web, gw)
		Expect(st.Total).To(BeEquivalentTo(2))
		Expect(p.agent.Status().PIDs("web")).To(Equal(before[:1]), "count 1 keeps slot 0")
		Expect(listenInode(p.agent.Addrs("web")[0])).To(Equal(inode), "the socket of the address")
		for _, pid := range after[1:] {
			_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
			Expect(err).To(MatchError(os.ErrNotExist), "a surplus worker %d still runs", pid)
		}
		checkLoad(load)
		gatewayKept()
	})

	It("binds an added address, and closes it once no worker has it", func() {
		load := startLoad(p.url("web"), 4)
		before := p.agent.Status().PIDs("web")
		inode := listenInode(p.agent.Addrs("web")[0])
		second := v1alpha1.ListenAddress("unix://" + filepath.Join(filepath.Dir(p.socket), "web.sock"))
		path := strings.TrimPrefix(string(second), "unix://")

		web.Listen = append(web.Listen, second)
		p.change(web, gw)
		after := p.agent.Status().PIDs("web")
		for slot := range after {
			Expect(after[slot]).NotTo(Equal(before[slot]), "worker %d was not replaced", slot)
			Expect(holds(after[slot], inode)).To(BeTrue(), "worker %d does not hold the socket the agent kept", slot)
		}
		Expect(listenInode(p.agent.Addrs("web")[0])).To(Equal(inode), "the socket of the unchanged address")
		Expect(p.agent.Addrs("web")).To(HaveLen(2))
		body, err := unixGet(path)
		Expect(err).NotTo(HaveOccurred(), "a request on the added address")
		Expect(body).To(HavePrefix("rev="))

		web.Listen = web.Listen[:1]
		p.change(web, gw)
		last := p.agent.Status().PIDs("web")
		for slot := range last {
			Expect(last[slot]).NotTo(Equal(after[slot]), "worker %d was not replaced", slot)
			Expect(holds(last[slot], inode)).To(BeTrue(), "worker %d does not hold the socket the agent kept", slot)
		}
		Expect(listenInode(p.agent.Addrs("web")[0])).To(Equal(inode), "the socket of the unchanged address")
		Expect(p.agent.Addrs("web")).To(HaveLen(1))
		_, err = net.Dial("unix", path)
		Expect(err).To(HaveOccurred(), "the removed address still accepts")
		checkLoad(load)
		gatewayKept()
	})

	It("starts an added group and drains a removed one", func() {
		load := startLoad(p.url("web"), 4)
		before := p.agent.Status().PIDs("web")

		api := testGroup("api", 2)
		st := p.change(web, gw, api)
		Expect(st.Total).To(BeEquivalentTo(5))
		Expect(st.Groups).To(HaveLen(3))
		apiURL := p.url("api")
		apiAddr := p.agent.Addrs("api")[0].String()
		Expect(answers(apiURL, 5)).To(Equal([]string{st.Running}), "the added group's answers")
		apiPids := p.agent.Status().PIDs("api")

		st = p.change(web, gw)
		Expect(st.Total).To(BeEquivalentTo(3))
		Expect(p.agent.Status().PIDs("api")).To(BeEmpty())
		for _, pid := range apiPids {
			_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
			Expect(err).To(MatchError(os.ErrNotExist), "a worker %d of the removed group still runs", pid)
		}
		_, err := net.Dial("tcp", apiAddr)
		Expect(err).To(HaveOccurred(), "the removed group's address still accepts")
		Expect(p.agent.Status().PIDs("web")).To(Equal(before), "web's pids")
		checkLoad(load)
		gatewayKept()
	})

	It("keeps a changed gateway as it is and says it runs an older spec", func() {
		changed := *gw.DeepCopy()
		changed.Count = 2
		changed.Env = append(changed.Env, v1alpha1.EnvVar{Name: "GATEWAY_MODE", Value: "new"})
		st := p.change(web, changed)
		Expect(st.Groups).To(ContainElement(v1alpha1.AgentGroupStatus{
			Name: "gateway", Spec: v1alpha1.GroupSpecHash(gw), Outdated: v1alpha1.GroupSpecChanged,
		}), "the report's groups")
		Expect(st.Outdated()).To(HaveLen(1))
		Expect(st.Total).To(BeEquivalentTo(3), "the gateway keeps its count")
		gatewayKept()

		By("a code reload leaves it as it is too")
		p.write("version", "2")
		st, err := p.agent.Reload(context.Background())
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Outdated()).To(HaveLen(1), "after a code reload: %+v", st)
		gatewayKept()
	})
})
