package controllers

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
)

func TestCodeSize(t *testing.T) {
	code := poolrevision.Code{
		Data:       map[string]string{"app.py": "print(1)\n"},
		BinaryData: map[string][]byte{"logo.png": {1, 2, 3}},
	}
	// Keys count too, as the API server counts them.
	if got, want := codeSize(code), len("app.py")+9+len("logo.png")+3; got != want {
		t.Fatalf("codeSize = %d, want %d", got, want)
	}
}

func TestSnapshotRefused(t *testing.T) {
	cm := schema.GroupResource{Resource: "configmaps"}
	code := &workersv1alpha1.ConfigMapCodeSource{Name: "web-code"}
	cases := map[string]struct {
		err        error
		code       *workersv1alpha1.ConfigMapCodeSource
		wantReason string // "" when retrying may cure it
	}{
		"quota": {
			err:        apierrors.NewForbidden(cm, "web-v2", errors.New("exceeded quota: cms, requested: count/configmaps=1")),
			code:       code,
			wantReason: workersv1alpha1.ReasonSnapshotNotCreated,
		},
		"invalid": {
			err:        apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "web-v2", field.ErrorList{field.TooLong(field.NewPath("data"), "", 1048576)}),
			code:       code,
			wantReason: workersv1alpha1.ReasonSnapshotNotCreated,
		},
		"too large says to use an image": {
			err:        apierrors.NewRequestEntityTooLargeError("limit is 3145728"),
			code:       code,
			wantReason: workersv1alpha1.ReasonCodeTooLarge,
		},
		"too large in image mode": {
			err:        apierrors.NewRequestEntityTooLargeError("limit is 3145728"),
			wantReason: workersv1alpha1.ReasonSnapshotNotCreated,
		},
		"timeout is retried quietly":     {err: apierrors.NewTimeoutError("etcd", 1), code: code},
		"unavailable is retried quietly": {err: apierrors.NewServiceUnavailable("starting"), code: code},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := snapshotRefused("web-v2", "v2", tc.code, tc.err)
			var reason string
			if got != nil {
				reason = got.reason
			}
			if diff := cmp.Diff(tc.wantReason, reason); diff != "" {
				t.Fatalf("reason (-want +got):\n%s", diff)
			}
			if got != nil && !contains(got.message, "web-v2", tc.err.Error()) {
				t.Errorf("message %q names neither the snapshot nor the API server's error", got.message)
			}
		})
	}
}

func contains(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
