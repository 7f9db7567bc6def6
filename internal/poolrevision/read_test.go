package poolrevision

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

func snapshotWithSpec(raw string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "web-abc", Annotations: map[string]string{workersv1alpha1.SnapshotSpecAnnotation: raw},
	}}
}

func TestSpecFromRefusesWhatNoAgentCanRun(t *testing.T) {
	tests := map[string]struct {
		raw  string
		want string // in the error
	}{
		"not JSON":            {raw: "groups: []", want: "reading the " + workersv1alpha1.SnapshotSpecAnnotation + " annotation"},
		"null":                {raw: "null", want: "groups: Required value"},
		"no groups":           {raw: `{"groups":[]}`, want: "groups: Required value"},
		"two billion workers": {raw: `{"groups":[{"name":"web","command":["x"],"count":2147483647}]}`, want: "groups[0].count"},
		"a group without a name": {
			raw: `{"groups":[{"command":["x"]}]}`, want: "groups[0].name: Required value",
		},
		"a bad listen address": {raw: `{"groups":[{"name":"web","command":["x"],"listen":["tcp://:0"]}]}`, want: "groups[0].listen[0]"},
		"an unknown replacement": {
			raw: `{"groups":[{"name":"web","command":["x"]}],"replacement":"AllAtOnce"}`, want: `replacement: Unsupported value: "AllAtOnce"`,
		},
		"a negative maxSurge": {raw: `{"groups":[{"name":"web","command":["x"]}],"maxSurge":-1}`, want: "maxSurge: Invalid value: -1"},
		"an image without a reference": {
			raw: `{"groups":[{"name":"web","command":["x"]}],"image":{"path":"/code"}}`, want: "image.reference: Required value",
		},
		"too large": {raw: `{"restartedAt":"` + strings.Repeat("x", 256<<10) + `"}`, want: "more than the API server allows"},
		"an image path that is relative": {
			raw: `{"groups":[{"name":"web","command":["x"]}],"image":{"reference":"app:1","path":"../code"}}`, want: "image.path: Invalid value",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := SpecFrom(snapshotWithSpec(tc.raw))
			if err == nil {
				t.Fatal("SpecFrom accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "web-abc") {
				t.Errorf("error %q does not say %q and name the snapshot", err, tc.want)
			}
		})
	}
}

func TestFilesOf(t *testing.T) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "web-abc"},
		Data:       map[string]string{"app.py": "print(1)", ".env": "X=1"},
		BinaryData: map[string][]byte{"logo.png": {0x89, 'P'}},
	}
	files, err := FilesOf(cm)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || string(files["app.py"]) != "print(1)" || string(files["logo.png"]) != "\x89P" || string(files[".env"]) != "X=1" {
		t.Errorf("FilesOf = %q", files)
	}
	for name, bad := range map[string]*corev1.ConfigMap{
		`"../../etc/passwd"`:       {Data: map[string]string{"../../etc/passwd": "x"}},
		`"lib/util.py"`:            {Data: map[string]string{"lib/util.py": "x"}},
		`".."`:                     {BinaryData: map[string][]byte{"..": {1}}},
		`"..data"`:                 {Data: map[string]string{"..data": "x"}},
		`"app.py" is both in data`: {Data: map[string]string{"app.py": "x"}, BinaryData: map[string][]byte{"app.py": {1}}},
	} {
		bad.Name = "web-abc"
		if _, err := FilesOf(bad); err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "web-abc") {
			t.Errorf("FilesOf(%v) = %v, want an error naming %s and the snapshot", bad.Data, err, name)
		}
	}
}

// FuzzSpecFrom: whatever a snapshot's spec annotation holds, SpecFrom does
// not panic, and what it accepts an agent can run: valid groups, within the
// API's bounds. `go test -fuzz FuzzSpecFrom ./internal/poolrevision` searches
// further than the seeds.
func FuzzSpecFrom(f *testing.F) {
	valid, err := json.Marshal(SpecOf(pool()))
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		string(valid), "", "null", "{}", "[]", `{"groups":null}`,
		`{"groups":[{"name":"web","command":["x"],"count":2147483647}]}`,
		`{"groups":[{"name":"web","command":["x"],"count":-1,"listen":["unix:///a","unix:///a"]}]}`,
		`{"groups":[{"name":"a","command":["x"]},{"name":"a","command":["x"]}]}`,
		`{"groups":[{"name":"web","command":["x"],"readiness":{"type":"Delay","delaySeconds":-5}}]}`,
		`{"groups":[{"name":"web","command":["x"],"stopSignal":"SIGSEGV","stopTimeoutSeconds":-1}]}`,
		`{"groups":[{"name":"web","command":[]}],"maxSurge":100000,"replacement":"x"}`,
		`{"groups":[{"name":"web","command":["x"]}],"image":{"reference":"a b","path":"rel/"}}`,
		`{"groups":[{"name":"web","command":["x"],"env":[{"name":"","value":"v"}]}]}`,
		`{"groups":[{"name":"WEB","command":["x"]}],"restartedAt":"` + strings.Repeat("z", 1000) + `"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		spec, err := SpecFrom(snapshotWithSpec(raw))
		if err != nil {
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("accepted a spec it finds invalid: %v", err)
		}
		if len(raw) > maxSpecBytes {
			t.Fatalf("accepted %d bytes", len(raw))
		}
		if len(spec.Groups) == 0 || len(spec.Groups) > workersv1alpha1.MaxGroups {
			t.Fatalf("accepted %d groups", len(spec.Groups))
		}
		for _, g := range spec.Groups {
			workersv1alpha1.SetGroupDefaults(&g)
			if g.Count < 1 || g.Count > workersv1alpha1.MaxCount || len(g.Command) == 0 {
				t.Fatalf("accepted group %q with count %d and command %q", g.Name, g.Count, g.Command)
			}
		}
	})
}

// FuzzFilesOf: whatever names and contents a snapshot holds, FilesOf does
// not panic, and every name it accepts is a plain file name in the
// revision's directory.
func FuzzFilesOf(f *testing.F) {
	for _, seed := range [][2]string{
		{"app.py", "print(1)"}, {"../x", ""}, {"a/b", ""}, {"/etc/passwd", ""}, {".", ""}, {"..", ""},
		{"..data", ""}, {"", ""}, {"a\x00b", ""}, {"é", ""}, {strings.Repeat("a", 300), ""}, {"C:\\x", ""},
	} {
		f.Add(seed[0], seed[1], "logo.png", []byte{1})
	}
	f.Fuzz(func(t *testing.T, name, content, binName string, binContent []byte) {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "web-abc"},
			Data:       map[string]string{name: content},
			BinaryData: map[string][]byte{binName: binContent},
		}
		files, err := FilesOf(cm)
		if err != nil {
			return
		}
		if name == binName {
			t.Fatalf("accepted %q in both data and binaryData", name)
		}
		for n := range files {
			if !filepath.IsLocal(n) || filepath.Base(n) != n || strings.HasPrefix(n, "..") || n == "." {
				t.Fatalf("accepted the file name %q", n)
			}
		}
		if string(files[name]) != content || string(files[binName]) != string(binContent) {
			t.Fatalf("FilesOf changed the content")
		}
	})
}
