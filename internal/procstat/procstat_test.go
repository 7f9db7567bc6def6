package procstat

import (
	"os"
	"os/exec"
	"testing"

	. "github.com/onsi/gomega"
)

func TestParse(t *testing.T) {
	g := NewWithT(t)
	// A command that holds spaces and a closing parenthesis.
	line := []byte("4242 (a (b) c) S 17 4242 4242 0 -1 4194560 100 0 0 0 37 12 0 0 20 0 1 0 98765 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
	st, err := parse(4242, line)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st).To(Equal(Stat{Comm: "a (b) c", State: 'S', PPid: 17, UTime: 37, STime: 12, StartTime: 98765}))
	g.Expect(st.CPU().Milliseconds()).To(BeEquivalentTo(490))

	_, err = parse(4242, []byte("4242 (cut) S 17 4242"))
	g.Expect(err).To(MatchError(ContainSubstring("/proc/4242/stat has 3 fields after the command")))
	_, err = parse(4242, []byte("4242 no command"))
	g.Expect(err).To(MatchError(ContainSubstring("no command in parentheses")))
}

func TestReadTellsAProcessFromALaterOne(t *testing.T) {
	g := NewWithT(t)
	self, err := Read(os.Getpid())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(self.PPid).To(Equal(os.Getppid()))
	g.Expect(self.Exited()).To(BeFalse())
	g.Expect(Runs(os.Getpid(), self.StartTime)).To(BeTrue())
	g.Expect(Runs(os.Getpid(), self.StartTime+1)).To(BeFalse(), "a later process with this pid")

	child := exec.Command("sleep", "60")
	g.Expect(child.Start()).To(Succeed())
	st, err := Read(child.Process.Pid)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.PPid).To(Equal(os.Getpid()))
	g.Expect(child.Process.Kill()).To(Succeed())
	// Killed, not yet reaped: it has exited.
	g.Eventually(func() bool { return Runs(child.Process.Pid, st.StartTime) }).Should(BeFalse())
	_ = child.Wait()
	_, err = Read(child.Process.Pid)
	g.Expect(err).To(MatchError(os.ErrNotExist))
}
