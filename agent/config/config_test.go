package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"sigs.k8s.io/yaml"

	"github.com/softreload/softreload/agent/config"
	"github.com/softreload/softreload/api/v1alpha1"
)

const valid = `
codeDir: app
metricsAddress: 127.0.0.1:9100
groups:
  - name: web
    command: ["php", "worker.php"]
    count: 4
    listen: ["tcp://0.0.0.0:8080"]
    readiness: {type: Notify, timeoutSeconds: 30}
  - name: gateway
    command: ["./gateway"]
    reloadable: false
    listen: ["unix:///run/gw.sock"]
strategy:
  replacement: StopFirst
  maxSurge: 2
`

func TestParseFillsInDefaults(t *testing.T) {
	c, err := config.Parse([]byte(valid), "/srv")
	if err != nil {
		t.Fatal(err)
	}
	if c.CodeDir != "/srv/app" {
		t.Errorf("codeDir = %q, want it relative to the config's directory", c.CodeDir)
	}
	web := c.Groups[0]
	got := []any{web.Count, *web.Reloadable, web.Readiness.Type, *web.Readiness.DelaySeconds, web.StopSignal, web.StopTimeoutSeconds,
		*c.Groups[1].Reloadable, c.Groups[1].Count, c.Strategy.Replacement, c.Strategy.MaxSurge, *c.PrefixOutput, c.KeepRevisions}
	want := []any{int32(4), true, v1alpha1.ReadinessNotify, int32(1), v1alpha1.Signal("SIGTERM"), int32(30),
		false, int32(1), v1alpha1.StopFirst, int32(2), true, 5}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

// TestParseRefusesBadConfigs: every bad config is refused with a message
// that names the field.
func TestParseRefusesBadConfigs(t *testing.T) {
	tests := map[string]struct {
		yaml string
		want []string
	}{
		"not yaml":       {yaml: "groups: [", want: []string{"parsing the config"}},
		"unknown field":  {yaml: "group:\n- name: web\n", want: []string{`unknown field "group"`}},
		"no groups":      {yaml: "codeDir: .\n", want: []string{"groups: Required value"}},
		"wrong type":     {yaml: "groups:\n- name: web\n  command: ./w\n", want: []string{"parsing the config"}},
		"duplicate name": {yaml: "groups:\n- {name: web, command: [a]}\n- {name: web, command: [b]}\n", want: []string{`groups[1].name: Duplicate value: "web"`}},
		"count 0":        {yaml: "groups:\n- {name: web, command: [a], count: -1}\n", want: []string{"groups[0].count: Invalid value: -1: must be from 1 to 256"}},
		"count 300":      {yaml: "groups:\n- {name: web, command: [a], count: 300}\n", want: []string{"groups[0].count"}},
		"empty command":  {yaml: "groups:\n- {name: web, command: []}\n", want: []string{"groups[0].command: Required value"}},
		"empty program":  {yaml: "groups:\n- {name: web, command: ['']}\n", want: []string{"groups[0].command[0]"}},
		"bad address": {yaml: "groups:\n- {name: web, command: [a], listen: ['0.0.0.0:80']}\n",
			want: []string{"groups[0].listen[0]", "tcp://HOST:PORT"}},
		"bad tcp6": {yaml: "groups:\n- {name: web, command: [a], listen: ['tcp6://::1:80']}\n", want: []string{"groups[0].listen[0]"}},
		"relative unix": {yaml: "groups:\n- {name: web, command: [a], listen: ['unix://a.sock']}\n",
			want: []string{"groups[0].listen[0]", "unix:///absolute/path"}},
		"same address in two groups": {
			yaml: "groups:\n- {name: web, command: [a], listen: ['tcp://:80']}\n- {name: api, command: [b], listen: ['tcp://:80']}\n",
			want: []string{"groups[1].listen[0]", `group "web" listens on it too`},
		},
		"bad signal": {yaml: "groups:\n- {name: web, command: [a], stopSignal: TERM}\n",
			want: []string{`groups[0].stopSignal: Unsupported value: "TERM"`}},
		"stop timeout": {yaml: "groups:\n- {name: web, command: [a], stopTimeoutSeconds: 4000}\n",
			want: []string{"groups[0].stopTimeoutSeconds"}},
		"readiness type": {yaml: "groups:\n- {name: web, command: [a], readiness: {type: HTTP}}\n",
			want: []string{"groups[0].readiness.type"}},
		"readiness delay": {yaml: "groups:\n- {name: web, command: [a], readiness: {delaySeconds: 5, timeoutSeconds: 5}}\n",
			want: []string{"groups[0].readiness.delaySeconds", "less than timeoutSeconds"}},
		"maxSurge": {yaml: "groups:\n- {name: web, command: [a]}\nstrategy: {maxSurge: 1000}\n",
			want: []string{"strategy.maxSurge"}},
		"replacement": {yaml: "groups:\n- {name: web, command: [a]}\nstrategy: {replacement: Recreate}\n",
			want: []string{"strategy.replacement"}},
		"metrics address": {yaml: "metricsAddress: localhost\ngroups:\n- {name: web, command: [a]}\n",
			want: []string{"metricsAddress", "HOST:PORT"}},
		"control socket too long": {yaml: "controlSocket: /" + strings.Repeat("a", 120) + "\ngroups:\n- {name: web, command: [a]}\n",
			want: []string{"controlSocket"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), "/srv")
			if err == nil {
				t.Fatal("the config was accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLoadNamesTheFileAndDefaultsTheSocket(t *testing.T) {
	_, err := config.Load("/nonexistent/pool.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/pool.yaml") {
		t.Errorf("Load of a missing file = %v, want an error naming it", err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.yaml")
	writeFile(t, path, "groups:\n- {name: web, command: [a], count: 0}\n")
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.ControlSocket != config.DefaultControlSocket(path) || c.CodeDir != dir {
		t.Errorf("controlSocket %q, codeDir %q; want the defaults for %s", c.ControlSocket, c.CodeDir, path)
	}
}

// FuzzParse: Parse never panics, and a config it accepts is valid and reads
// back the same once written out.
func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte("groups:\n- {name: web, command: [a], listen: ['tcp6://[::1]:80', 'unix:///x']}\n"))
	f.Add([]byte("groups:\n- {name: a, command: [x], readiness: {type: Delay, delaySeconds: 0}}\nstrategy: {maxUnavailable: 50%}\n"))
	f.Add([]byte("groups: [{name: a, command: [x], env: [{name: A, value: b}], args: [--x]}]\nprefixOutput: false\n"))
	f.Add([]byte("{}"))
	f.Add([]byte("groups: null"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "/srv")
		if err != nil {
			return
		}
		if errs := config.Validate(c); len(errs) > 0 {
			t.Fatalf("Parse accepted an invalid config: %v", errs)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := config.Parse(out, "/srv")
		if err != nil {
			t.Fatalf("a config written out is refused: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, back, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	})
}

func TestRereadAppliesGroupsAndRefusesTheRest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pool.yaml")
	write := func(extra string, count int) {
		t.Helper()
		data := fmt.Sprintf("groups:\n  - name: web\n    command: [./web]\n    count: %d\n%s", count, extra)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("", 2)
	cur, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	write("strategy: {maxSurge: 2}\n", 4)
	next, err := config.Reread(cur)
	if err != nil {
		t.Fatalf("Reread of a new count and strategy: %v", err)
	}
	if next.Groups[0].Count != 4 || next.Strategy.MaxSurge != 2 {
		t.Errorf("Reread: count %d, maxSurge %d; want 4 and 2", next.Groups[0].Count, next.Strategy.MaxSurge)
	}
	write("metricsAddress: 127.0.0.1:9100\n", 2)
	if _, err := config.Reread(cur); err == nil || !strings.Contains(err.Error(), "metricsAddress") || !strings.Contains(err.Error(), "restart") {
		t.Errorf("Reread of a new metrics address = %v; want an error naming metricsAddress and the restart", err)
	}
	if _, err := config.Reread(&config.Config{}); err == nil {
		t.Error("Reread of a config not read from a file succeeded")
	}
}
