package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Dockerfile copies only the directories it names into the builder,
// and .dockerignore lets only those through: both must name every
// directory of the module that the manager and the agent import, or a
// Docker build fails where `go build` works.
func TestDockerfileCopiesEverySourceDirectory(t *testing.T) {
	root := filepath.Join("..", "..")
	copied := matches(t, filepath.Join(root, "Dockerfile"), regexp.MustCompile(`^COPY ([a-z0-9]+)/ `))
	allowed := matches(t, filepath.Join(root, ".dockerignore"), regexp.MustCompile(`^!([a-z0-9]+)/$`))
	for _, cmd := range []string{"manager", "agent"} {
		t.Run(cmd, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(root, "cmd", cmd, "main.go")); err != nil {
				t.Skipf("cmd/%s is not written yet: %v", cmd, err)
			}
			list := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.ImportPath}}{{end}}{{end}}", "./cmd/"+cmd)
			list.Dir = root
			var stderr bytes.Buffer
			list.Stderr = &stderr
			out, err := list.Output()
			if err != nil {
				t.Fatalf("go list ./cmd/%s: %v\n%s", cmd, err, stderr.String())
			}
			if len(out) == 0 {
				t.Fatalf("go list ./cmd/%s lists no package of the module", cmd)
			}
			const module = "github.com/softreload/softreload/"
			for _, pkg := range strings.Fields(string(out)) {
				dir, _, _ := strings.Cut(strings.TrimPrefix(pkg, module), "/")
				if !slices.Contains(copied, dir) {
					t.Errorf("cmd/%s imports %s, but the Dockerfile does not COPY %s/", cmd, pkg, dir)
				}
				if !slices.Contains(allowed, dir) {
					t.Errorf("cmd/%s imports %s, but .dockerignore does not let %s/ through", cmd, pkg, dir)
				}
			}
		})
	}
}

// matches returns the first group of re on every line of the file.
func matches(t *testing.T, path string, re *regexp.Regexp) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if m := re.FindStringSubmatch(s.Text()); m != nil {
			out = append(out, m[1])
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no line like %s", path, re)
	}
	return out
}
