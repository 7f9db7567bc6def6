package controllers

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
)

// problem is why the pool's revision cannot be made, when the user must
// act: the reason of the Progressing and Degraded conditions, and a message
// that names the field or the object to fix.
type problem struct {
	reason, message string
}

// maxSnapshotBytes is the most a ConfigMap may hold, keys and values of
// data and binaryData together: the API server's limit, and so a snapshot's.
const maxSnapshotBytes = corev1.MaxSecretSize

// codeSize is the size of code as the API server counts it against
// maxSnapshotBytes.
func codeSize(code poolrevision.Code) int {
	n := 0
	for k, v := range code.Data {
		n += len(k) + len(v)
	}
	for k, v := range code.BinaryData {
		n += len(k) + len(v)
	}
	return n
}

func invalidSelector(err error) *problem {
	return &problem{workersv1alpha1.ReasonInvalidSelector, fmt.Sprintf("spec.selector is not a valid label selector: %v", err)}
}

func codeNotFound(configMap string) *problem {
	return &problem{workersv1alpha1.ReasonCodeSourceNotFound,
		fmt.Sprintf("ConfigMap %s (spec.code.configMapRef) does not exist", configMap)}
}

func codeTooLarge(configMap string, size int) *problem {
	return &problem{workersv1alpha1.ReasonCodeTooLarge, fmt.Sprintf(
		"ConfigMap %s (spec.code.configMapRef) holds %d bytes of code, more than the %d bytes a ConfigMap, and so a revision snapshot, may hold: ship code this large in a code image (spec.code.image)",
		configMap, size, maxSnapshotBytes)}
}

func snapshotNameTaken(name, pool, rev string) *problem {
	return &problem{workersv1alpha1.ReasonSnapshotNameTaken, fmt.Sprintf(
		"ConfigMap %s is in the way of the snapshot of revision %s: it is not labelled %s=%s, %s=%s; rename or delete it",
		name, rev, workersv1alpha1.PoolNameLabel, pool, workersv1alpha1.RevisionLabel, rev)}
}

// snapshotRefused describes the API server's refusal to create snapshot
// name of revision rev, when the user can do something about it (a quota, a
// policy, a limit); nil for errors that retrying may cure (a timeout, an
// unavailable server). Code too large for a ConfigMap says to use an image.
func snapshotRefused(name, rev string, code *workersv1alpha1.ConfigMapCodeSource, err error) *problem {
	switch {
	case apierrors.IsRequestEntityTooLargeError(err) && code != nil:
		return &problem{workersv1alpha1.ReasonCodeTooLarge, fmt.Sprintf(
			"The API server refused snapshot %s of revision %s as too large (%v): ConfigMap %s (spec.code.configMapRef) holds more code than a ConfigMap can; ship it in a code image (spec.code.image)",
			name, rev, err, code.Name)}
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err) || apierrors.IsRequestEntityTooLargeError(err):
		return &problem{workersv1alpha1.ReasonSnapshotNotCreated, fmt.Sprintf(
			"Cannot create ConfigMap %s, the snapshot of revision %s: %v", name, rev, err)}
	default:
		return nil
	}
}
