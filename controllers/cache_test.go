package controllers

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// cachedMeta is the metadata of an object as the API server sends it; bare
// is the same without its managed fields.
var (
	cachedMeta = metav1.ObjectMeta{
		Name: "web-0", Namespace: "shop", UID: "u1", ResourceVersion: "42",
		Labels:        map[string]string{workersv1alpha1.PoolLabel: "web"},
		Annotations:   map[string]string{workersv1alpha1.DesiredRevisionAnnotation: "abc"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}
	bareMeta = func() metav1.ObjectMeta { m := *cachedMeta.DeepCopy(); m.ManagedFields = nil; return m }()
	deleted  = metav1.Now()
)

var _ = DescribeTable("the cache's transforms keep what the controllers and the webhook read, and drop the rest",
	func(transform toolscache.TransformFunc, in, want any) {
		got, err := transform(in)
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(BeComparableTo(want), "transformed")
	},
	Entry("a pod keeps its metadata, service account and containers' names and images", trimPod,
		&corev1.Pod{ObjectMeta: cachedMeta, Spec: corev1.PodSpec{
			ServiceAccountName: "web-sa",
			Containers: []corev1.Container{{Name: "app", Image: "app:v1", Env: []corev1.EnvVar{{Name: "A", Value: "1"}}},
				{Name: "softreload-code", Image: "code:v1", Args: []string{"copy"}}},
			Volumes: []corev1.Volume{{Name: "data"}},
		}, Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}},
		&corev1.Pod{ObjectMeta: bareMeta, Spec: corev1.PodSpec{
			ServiceAccountName: "web-sa",
			Containers:         []corev1.Container{{Name: "app", Image: "app:v1"}, {Name: "softreload-code", Image: "code:v1"}},
		}}),
	Entry("a snapshot keeps its metadata, not its files", trimSnapshot,
		&corev1.ConfigMap{ObjectMeta: cachedMeta, Immutable: ptr.To(true),
			Data: map[string]string{"server.py": "print()"}, BinaryData: map[string][]byte{"a.bin": {1}}},
		&corev1.ConfigMap{ObjectMeta: bareMeta, Immutable: ptr.To(true)}),
	Entry("a code ConfigMap's metadata keeps what tells its versions apart", keepIdentity,
		&metav1.PartialObjectMetadata{ObjectMeta: func() metav1.ObjectMeta {
			m := *cachedMeta.DeepCopy()
			m.DeletionTimestamp = &deleted
			return m
		}()},
		&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Name: "web-0", Namespace: "shop", UID: "u1", ResourceVersion: "42", DeletionTimestamp: &deleted}}),
	Entry("a tombstone passes", trimPod,
		toolscache.DeletedFinalStateUnknown{Key: "shop/web-0"},
		toolscache.DeletedFinalStateUnknown{Key: "shop/web-0"}),
)
