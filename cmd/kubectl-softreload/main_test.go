package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"
)

// runMain makes the test binary run main instead of the tests, so the tests
// can run the plugin as kubectl runs it: a process with arguments, whose
// exit code and stderr are what a user sees.
const runMain = "KUBECTL_SOFTRELOAD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestExit(t *testing.T) {
	cases := map[string]struct {
		args       []string
		code       int
		out, erred string
	}{
		"success exits 0": {args: []string{"version"}, code: 0, out: "dev\n"},
		"an error is printed and exits 1": {
			args:  []string{"status"},
			code:  1,
			erred: "error: a WorkerPool name is required; usage: kubectl softreload status POOL [flags]\n",
		},
		"an unreadable kubeconfig exits 1": {
			args:  []string{"status", "web", "--kubeconfig", "/nonexistent/kubeconfig"},
			code:  1,
			erred: "error: reading the namespace from the kubeconfig: stat /nonexistent/kubeconfig: no such file or directory\n",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := exec.Command(os.Args[0], tc.args...)
			cmd.Env = append(os.Environ(), runMain+"=1")
			cmd.Stdout, cmd.Stderr = &out, &errOut
			code := 0
			if err := cmd.Run(); err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatal(err)
				}
				code = exit.ExitCode()
			}
			if code != tc.code || out.String() != tc.out || errOut.String() != tc.erred {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q", code, out.String(), errOut.String(), tc.code, tc.out, tc.erred)
			}
		})
	}
}
