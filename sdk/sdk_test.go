// Package sdk_test runs the unit tests of every worker library in sdk/
// with its own language's tools, so `make test` (go test ./...) covers them.
package sdk_test

import (
	"os"
	"os/exec"
	"sync"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

func TestSDK(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "sdk")
}

// library is one worker library and how to run its tests.
type library struct {
	dir     string   // under sdk/, where the command runs
	command []string // the test command; command[0] is the interpreter
	install string   // what to install when the interpreter is missing
}

// One line per language. A machine without the interpreter fails the
// language's spec at once, naming what to install: never a skip.
var libraries = map[string]library{
	"python": {dir: "python", command: []string{"python3", "-m", "unittest", "discover", "-s", "tests"}, install: "python3 (apt-get install python3)"},
	"php":    {dir: "php", command: []string{"php", "tests/run.php"}, install: "php (apt-get install php-cli)"},
	"node":   {dir: "node", command: []string{"node", "--test"}, install: "node (apt-get install nodejs)"},
}

// started starts every library's tests at once, the first time a spec
// asks: they run side by side, and each spec waits for its own.
var started = sync.OnceValue(func() map[string]*run {
	runs := map[string]*run{}
	for lang, lib := range libraries {
		r := &run{}
		runs[lang] = r
		if _, err := exec.LookPath(lib.command[0]); err != nil {
			r.missing = lib.command[0] + " is not installed: the " + lang + " library's tests need " + lib.install
			continue
		}
		cmd := exec.Command(lib.command[0], lib.command[1:]...)
		cmd.Dir = lib.dir
		cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1") // leave no __pycache__ in the tree
		r.session, r.err = gexec.Start(cmd, nil, nil)
	}
	return runs
})

// run is one library's test run.
type run struct {
	session *gexec.Session
	err     error
	missing string // why it could not start
}

var _ = Describe("Worker libraries", func() {
	for lang, lib := range libraries {
		It("pass their own tests: "+lang, func() {
			r := started()[lang]
			if r.missing != "" {
				Fail(r.missing)
			}
			Expect(r.err).NotTo(HaveOccurred())
			Eventually(r.session, "5m").Should(gexec.Exit(), "%v in sdk/%s never ended", lib.command, lib.dir)
			Expect(r.session.ExitCode()).To(BeZero(), "%v in sdk/%s failed:\n%s%s",
				lib.command, lib.dir, r.session.Out.Contents(), r.session.Err.Contents())
		})
	}
})

// A run the suite left (a spec failed or timed out) ends with it.
var _ = AfterSuite(func() { gexec.KillAndWait() })
