package pod

import (
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/agent/supervisor"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

var _ = Describe("The report's connection counts", func() {
	// A gateway's connections change while nothing else does: the report
	// follows them, counted on real sockets (this process stands for the
	// gateway worker), and counts none for a reloadable group.
	It("count the connections of the groups that are not reloadable, again as they change", func() {
		gw, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		defer gw.Close()
		web, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		defer web.Close()
		addr := func(l net.Listener) v1alpha1.ListenAddress {
			return v1alpha1.ListenAddress("tcp://127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
		}
		status := func() supervisor.Status {
			return supervisor.Status{
				Groups: []supervisor.GroupStatus{
					{Name: "web", Reloadable: true, Listen: []v1alpha1.ListenAddress{addr(web)}},
					{Name: "gateway", Listen: []v1alpha1.ListenAddress{addr(gw)}},
				},
				Workers: []supervisor.WorkerStatus{{Group: "web", PID: os.Getpid()}, {Group: "gateway", PID: os.Getpid()}},
			}
		}
		in := make(chan v1alpha1.AgentStatus, 1)
		cancelled := false
		out, stop := withConnections(in, func() { cancelled = true }, status, 20*time.Millisecond, slog.Default())
		in <- v1alpha1.AgentStatus{Revision: "r1", State: v1alpha1.AgentReady, Groups: []v1alpha1.AgentGroupStatus{{Name: "web", Spec: "0a"}, {Name: "gateway", Spec: "1b"}}}
		// Waits are for a count that comes; a busy machine only makes it slow.
		var latest []int32 // web's and the gateway's, as last reported
		connections := func() []int32 {
			select {
			case st := <-out:
				latest = []int32{st.Groups[0].Connections, st.Groups[1].Connections}
			default:
			}
			return latest
		}
		Eventually(connections).WithTimeout(time.Minute).Should(Equal([]int32{0, 0}))

		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for _, l := range []net.Listener{gw, gw, web} {
			c, err := net.Dial("tcp", l.Addr().String())
			Expect(err).NotTo(HaveOccurred())
			a, err := l.Accept()
			Expect(err).NotTo(HaveOccurred())
			held = append(held, c, a)
		}
		Eventually(connections).WithTimeout(time.Minute).Should(Equal([]int32{0, 2}), "the gateway's two connections, none counted for web")
		held[1].Close()
		Eventually(connections).WithTimeout(time.Minute).Should(Equal([]int32{0, 1}), "after the gateway closed one")
		stop()
		Expect(cancelled).To(BeTrue(), "the engine's subscription ended")
	})
})
