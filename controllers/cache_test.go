package controllers

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// The cache's transforms keep what the controllers and the webhook read,
// and drop the rest.
func TestCacheTransforms(t *testing.T) {
	meta := metav1.ObjectMeta{
		Name: "web-0", Namespace: "shop", UID: "u1", ResourceVersion: "42",
		Labels:        map[string]string{workersv1alpha1.PoolLabel: "web"},
		Annotations:   map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "abc"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}
	bare := *meta.DeepCopy()
	bare.ManagedFields = nil
	now := metav1.Now()
	tests := map[string]struct {
		transform toolscache.TransformFunc
		in, want  any
	}{
		"a pod keeps its metadata, service account and containers' names and images": {
			transform: trimPod,
			in: &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{
				ServiceAccountName: "web-sa",
				Containers: []corev1.Container{{Name: "app", Image: "app:v1", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}},
					{Name: "softreload-code", Image: "code:v1", Args: []string{"copy"}}},
				Volumes: []corev1.Volume{{Name: "data"}},
			}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}},
			want: &corev1.Pod{ObjectMeta: bare, Spec: corev1.PodSpec{
				ServiceAccountName: "web-sa",
				Containers:         []corev1.Container{{Name: "app", Image: "app:v1"}, {Name: "softreload-code", Image: "code:v1"}},
			}},
		},
		"a snapshot keeps its metadata, not its files": {
			transform: trimSnapshot,
			in: &corev1.ConfigMap{ObjectMeta: meta, Immutable: ptr.To(true),
				Data: map[string]string{"server.py": "print()"}, BinaryData: map[string][]byte{"a.bin": {1}}},
			want: &corev1.ConfigMap{ObjectMeta: bare, Immutable: ptr.To(true)},
		},
		"a code ConfigMap's metadata keeps what tells its versions apart": {
			transform: keepIdentity,
			in:        &metav1.PartialObjectMetadata{ObjectMeta: func() metav1.ObjectMeta { m := *meta.DeepCopy(); m.DeletionTimestamp = &now; return m }()},
			want: &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
				Name: "web-0", Namespace: "shop", UID: "u1", ResourceVersion: "42", DeletionTimestamp: &now}},
		},
		"a tombstone passes": {
			transform: trimPod,
			in:        toolscache.DeletedFinalStateUnknown{Key: "shop/web-0"},
			want:      toolscache.DeletedFinalStateUnknown{Key: "shop/web-0"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.transform(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("transformed (-want +got):\n%s", diff)
			}
		})
	}
}
