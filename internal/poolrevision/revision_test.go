package poolrevision

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

func pool() *workersv1alpha1.WorkerPool {
	return &workersv1alpha1.WorkerPool{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "uid-1"},
		Spec: workersv1alpha1.WorkerPoolSpec{
			Code:     workersv1alpha1.CodeSource{ConfigMapRef: &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}},
			Groups:   []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"python3", "server.py"}, Count: 2}},
			Strategy: workersv1alpha1.RolloutStrategy{Replacement: workersv1alpha1.SurgeFirst, MaxSurge: 1},
		},
	}
}

func TestHash(t *testing.T) {
	base := SpecOf(pool())
	code := Code{Data: map[string]string{"a.py": "print(1)", "b.py": "print(2)"}}
	h := Hash(base, code)
	if len(h) != 16 {
		t.Fatalf("Hash = %q, want 16 hex digits", h)
	}

	same := Code{Data: map[string]string{"b.py": "print(2)", "a.py": "print(1)"}}
	if got := Hash(SpecOf(pool()), same); got != h {
		t.Errorf("equal content hashed to %s and %s", h, got)
	}

	changes := map[string]func(*Spec, *Code){
		"a file changes":         func(_ *Spec, c *Code) { c.Data = map[string]string{"a.py": "print(3)", "b.py": "print(2)"} },
		"a file is added":        func(_ *Spec, c *Code) { c.Data = map[string]string{"a.py": "print(1)", "b.py": "print(2)", "c.py": ""} },
		"a binary file is added": func(_ *Spec, c *Code) { c.BinaryData = map[string][]byte{"x.bin": {0}} },
		"a group changes": func(s *Spec, _ *Code) {
			s.Groups = []workersv1alpha1.WorkerGroup{{Name: "http", Command: []string{"python3", "server.py"}, Count: 3}}
		},
		"the replacement changes": func(s *Spec, _ *Code) { s.Replacement = workersv1alpha1.StopFirst },
		"a restart is asked":      func(s *Spec, _ *Code) { s.RestartedAt = "2026-11-28T12:00:00Z" },
		"an image is used": func(s *Spec, _ *Code) {
			s.Image = &workersv1alpha1.ImageCodeSource{Reference: "r/code:v2", Path: "/code"}
		},
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			s, c := SpecOf(pool()), Code{Data: map[string]string{"a.py": "print(1)", "b.py": "print(2)"}}
			change(&s, &c)
			if got := Hash(s, c); got == h {
				t.Errorf("Hash did not change: %s", got)
			}
		})
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	p := pool()
	p.Annotations = map[string]string{workersv1alpha1.RestartedAtAnnotation: "now"}
	spec, code := SpecOf(p), Code{Data: map[string]string{"a.py": "x"}, BinaryData: map[string][]byte{"b": {1, 2}}}
	cm, err := NewSnapshot(p, "abc", spec, code)
	if err != nil {
		t.Fatal(err)
	}
	if cm.Name != "web-abc" || cm.Namespace != "ns" || cm.Immutable == nil || !*cm.Immutable {
		t.Errorf("snapshot %s/%s immutable=%v, want ns/web-abc immutable", cm.Namespace, cm.Name, cm.Immutable)
	}
	if diff := cmp.Diff(map[string]string{workersv1alpha1.PoolNameLabel: "web", workersv1alpha1.RevisionLabel: "abc"}, cm.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != "uid-1" || !*cm.OwnerReferences[0].Controller {
		t.Errorf("owner references = %+v, want the pool as controller", cm.OwnerReferences)
	}
	got, err := SpecFrom(cm)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(spec, got); diff != "" {
		t.Errorf("SpecFrom (-want +got):\n%s", diff)
	}
	if Hash(got, CodeOf(cm)) != Hash(spec, code) {
		t.Error("the snapshot does not hash to its revision")
	}
}

func TestSnapshotName(t *testing.T) {
	long := string(make([]byte, 300))
	if n := SnapshotName(long, "0123456789abcdef"); len(n) != 253 {
		t.Errorf("len(SnapshotName) = %d, want 253", len(n))
	}
}

func TestPrune(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	snap := func(rev string, age int) corev1.ConfigMap {
		return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name:              "web-" + rev,
			Labels:            map[string]string{workersv1alpha1.RevisionLabel: rev},
			CreationTimestamp: metav1.NewTime(t0.Add(-time.Duration(age) * time.Minute)),
		}}
	}
	all := []corev1.ConfigMap{snap("r1", 5), snap("r2", 4), snap("r3", 3), snap("r4", 2), snap("r5", 1)}
	cases := map[string]struct {
		inUse   map[string]bool
		history []string
		limit   int
		want    []string
	}{
		"keeps the newest by creation time": {
			inUse: map[string]bool{"r5": true}, limit: 2, want: []string{"web-r2", "web-r1"},
		},
		"history order wins over creation time": {
			inUse: map[string]bool{"r5": true}, history: []string{"r5", "r1", "r4"}, limit: 2,
			want: []string{"web-r3", "web-r2"},
		},
		"revisions in use are always kept": {
			inUse: map[string]bool{"r5": true, "r1": true}, limit: 0,
			want: []string{"web-r4", "web-r3", "web-r2"},
		},
		"a limit above the count deletes nothing": {
			inUse: map[string]bool{}, limit: 10,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := Prune(all, tc.inUse, tc.history, tc.limit)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Prune (-want +got):\n%s", diff)
			}
		})
	}
}
