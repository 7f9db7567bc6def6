package poolrevision

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// Spec is everything of a revision that is not a code file: what the agent
// needs to run and reload the pool's workers. It is stored as JSON in the
// snapshot's SnapshotSpecAnnotation.
type Spec struct {
	// Groups are the pool's worker groups.
	Groups []workersv1alpha1.WorkerGroup `json:"groups"`
	// Replacement and MaxSurge say how the agent replaces workers.
	Replacement workersv1alpha1.ReplacementPolicy `json:"replacement,omitempty"`
	MaxSurge    int32                             `json:"maxSurge,omitempty"`
	// Image is the code image, in image mode; the snapshot then has no
	// files.
	Image *workersv1alpha1.ImageCodeSource `json:"image,omitempty"`
	// RestartedAt is the pool's RestartedAtAnnotation: a new value makes a
	// new revision of unchanged code.
	RestartedAt string `json:"restartedAt,omitempty"`
}

// Code is the files of a revision in ConfigMap mode: file name to content.
type Code struct {
	Data       map[string]string `json:"data,omitempty"`
	BinaryData map[string][]byte `json:"binaryData,omitempty"`
}

// SpecOf returns the revision spec of the pool as it is now.
func SpecOf(pool *workersv1alpha1.WorkerPool) Spec {
	s := Spec{
		Groups:      pool.Spec.Groups,
		Replacement: pool.Spec.Strategy.Replacement,
		MaxSurge:    pool.Spec.Strategy.MaxSurge,
		RestartedAt: pool.Annotations[workersv1alpha1.RestartedAtAnnotation],
	}
	if img := pool.Spec.Code.Image; img != nil {
		s.Image = img.DeepCopy()
	}
	return s
}

// CodeOf returns the files of a code ConfigMap.
func CodeOf(cm *corev1.ConfigMap) Code {
	return Code{Data: cm.Data, BinaryData: cm.BinaryData}
}

// Hash names the revision of spec and code: 16 hex digits of a SHA-256 over
// both. Equal content gives an equal name, whoever computes it.
func Hash(spec Spec, code Code) string {
	// encoding/json writes map keys sorted, so the encoding is canonical.
	b, err := json.Marshal(struct {
		Spec Spec `json:"spec"`
		Code Code `json:"code"`
	}{spec, code})
	if err != nil {
		// Only strings, numbers and byte slices: it cannot fail.
		panic(fmt.Sprintf("encoding a revision: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// SnapshotName is the name of the ConfigMap that holds revision rev of pool.
func SnapshotName(pool, rev string) string {
	const maxName = 253
	if len(pool)+1+len(rev) > maxName {
		pool = pool[:maxName-1-len(rev)]
	}
	return pool + "-" + rev
}

// NewSnapshot returns the immutable ConfigMap of revision rev, owned by pool
// so that it goes when the pool goes.
func NewSnapshot(pool *workersv1alpha1.WorkerPool, rev string, spec Spec, code Code) (*corev1.ConfigMap, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encoding the spec of revision %s: %w", rev, err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      SnapshotName(pool.Name, rev),
			Namespace: pool.Namespace,
			Labels: map[string]string{
				workersv1alpha1.PoolNameLabel: pool.Name,
				workersv1alpha1.RevisionLabel: rev,
			},
			Annotations: map[string]string{workersv1alpha1.SnapshotSpecAnnotation: string(b)},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(pool,
				workersv1alpha1.GroupVersion.WithKind("WorkerPool"))},
		},
		Immutable:  ptr.To(true),
		Data:       code.Data,
		BinaryData: code.BinaryData,
	}, nil
}

// SpecFrom reads the revision spec of a snapshot, and refuses one that no
// agent can run (Spec.Validate).
func SpecFrom(snapshot *corev1.ConfigMap) (Spec, error) {
	var s Spec
	raw, ok := snapshot.Annotations[workersv1alpha1.SnapshotSpecAnnotation]
	if !ok {
		return s, fmt.Errorf("snapshot %s has no %s annotation", snapshot.Name, workersv1alpha1.SnapshotSpecAnnotation)
	}
	if len(raw) > maxSpecBytes {
		return s, fmt.Errorf("the %s annotation of snapshot %s: %d bytes, more than the API server allows (%d)", workersv1alpha1.SnapshotSpecAnnotation, snapshot.Name, len(raw), maxSpecBytes)
	}
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return s, fmt.Errorf("reading the %s annotation of snapshot %s: %w", workersv1alpha1.SnapshotSpecAnnotation, snapshot.Name, err)
	}
	if err := s.Validate(); err != nil {
		return s, fmt.Errorf("the %s annotation of snapshot %s: %w", workersv1alpha1.SnapshotSpecAnnotation, snapshot.Name, err)
	}
	return s, nil
}

// Prune returns the snapshots to delete: every one but those whose revision
// is in use and the limit newest of the others. Newest is by the pool's
// history (newest first), then by creation time.
func Prune(snapshots []corev1.ConfigMap, inUse map[string]bool, history []string, limit int) []string {
	rank := func(cm corev1.ConfigMap) int {
		if i := slices.Index(history, cm.Labels[workersv1alpha1.RevisionLabel]); i >= 0 {
			return i
		}
		return len(history)
	}
	old := slices.DeleteFunc(slices.Clone(snapshots), func(cm corev1.ConfigMap) bool {
		return inUse[cm.Labels[workersv1alpha1.RevisionLabel]]
	})
	slices.SortStableFunc(old, func(a, b corev1.ConfigMap) int {
		return cmp.Or(
			cmp.Compare(rank(a), rank(b)),
			b.CreationTimestamp.Compare(a.CreationTimestamp.Time),
			cmp.Compare(a.Name, b.Name),
		)
	})
	var out []string
	for i, cm := range old {
		if i >= limit {
			out = append(out, cm.Name)
		}
	}
	return out
}
