package controllers

import (
	"errors"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
)

var _ = It("counts a code's size as the API server does, keys too", func() {
	code := poolrevision.Code{
		Data:       map[string]string{"app.py": "print(1)\n"},
		BinaryData: map[string][]byte{"logo.png": {1, 2, 3}},
	}
	Expect(codeSize(code)).To(Equal(len("app.py")+9+len("logo.png")+3), "codeSize")
})

var (
	configMaps = schema.GroupResource{Resource: "configmaps"}
	webCode    = &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}
)

var _ = DescribeTable("a snapshot the API server refuses",
	// wantReason is "" when retrying may cure it.
	func(err error, code *workersv1alpha1.ConfigMapCodeSource, wantReason string) {
		got := snapshotRefused("web-v2", "v2", code, err)
		var reason string
		if got != nil {
			reason = got.reason
		}
		Expect(reason).To(Equal(wantReason), "reason")
		if got != nil {
			Expect(got.message).To(SatisfyAll(ContainSubstring("web-v2"), ContainSubstring(err.Error())),
				"the message names neither the snapshot nor the API server's error")
		}
	},
	Entry("quota",
		apierrors.NewForbidden(configMaps, "web-v2", errors.New("exceeded quota: cms, requested: count/configmaps=1")),
		webCode, workersv1alpha1.ReasonSnapshotNotCreated),
	Entry("invalid",
		apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "web-v2", field.ErrorList{field.TooLong(field.NewPath("data"), "", 1048576)}),
		webCode, workersv1alpha1.ReasonSnapshotNotCreated),
	Entry("too large says to use an image",
		apierrors.NewRequestEntityTooLargeError("limit is 3145728"), webCode, workersv1alpha1.ReasonCodeTooLarge),
	Entry("too large in image mode",
		apierrors.NewRequestEntityTooLargeError("limit is 3145728"), (*workersv1alpha1.ConfigMapCodeSource)(nil), workersv1alpha1.ReasonSnapshotNotCreated),
	Entry("timeout is retried quietly", apierrors.NewTimeoutError("etcd", 1), webCode, ""),
	Entry("unavailable is retried quietly", apierrors.NewServiceUnavailable("starting"), webCode, ""),
)
