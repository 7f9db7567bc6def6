package poolrevision

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// Bounds of what a snapshot holds: an image code source as in the CRD, and
// the spec annotation, which cannot be larger than all of an object's
// annotations together may be.
const (
	maxSpecBytes      = 256 << 10
	maxImageReference = 512
	maxImagePath      = 1024
)

// Validate says what makes s a revision no agent can run, with the field
// named: the groups as the API server checks a WorkerPool's (after the
// defaults), the replacement, maxSurge and the code image. An agent reads s
// from a snapshot ConfigMap, which anyone who may write ConfigMaps in the
// namespace can make: nothing in it is trusted unchecked (a count of two
// billion workers, say).
func (s Spec) Validate() error {
	groups := make([]workersv1alpha1.WorkerGroup, len(s.Groups))
	for i := range s.Groups {
		groups[i] = *s.Groups[i].DeepCopy()
		workersv1alpha1.SetGroupDefaults(&groups[i])
	}
	errs := workersv1alpha1.ValidateGroups(groups, field.NewPath("groups"))
	switch s.Replacement {
	case "", workersv1alpha1.SurgeFirst, workersv1alpha1.StopFirst:
	default:
		errs = append(errs, field.NotSupported(field.NewPath("replacement"), s.Replacement,
			[]workersv1alpha1.ReplacementPolicy{workersv1alpha1.SurgeFirst, workersv1alpha1.StopFirst}))
	}
	if s.MaxSurge < 0 || s.MaxSurge > workersv1alpha1.MaxCount {
		errs = append(errs, field.Invalid(field.NewPath("maxSurge"), s.MaxSurge, fmt.Sprintf("must be from 1 to %d", workersv1alpha1.MaxCount)))
	}
	if img := s.Image; img != nil {
		p := field.NewPath("image")
		switch {
		case img.Reference == "":
			errs = append(errs, field.Required(p.Child("reference"), "an image code source names its image"))
		case len(img.Reference) > maxImageReference:
			errs = append(errs, field.TooLong(p.Child("reference"), img.Reference, maxImageReference))
		case strings.IndexFunc(img.Reference, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			errs = append(errs, field.Invalid(p.Child("reference"), img.Reference, "an image reference has no spaces or control characters"))
		}
		switch {
		case len(img.Path) > maxImagePath:
			errs = append(errs, field.TooLong(p.Child("path"), img.Path, maxImagePath))
		case img.Path != "" && !strings.HasPrefix(img.Path, "/"), strings.ContainsRune(img.Path, 0):
			errs = append(errs, field.Invalid(p.Child("path"), img.Path, "must be an absolute path"))
		}
	}
	return errs.ToAggregate()
}

// FilesOf returns the code files of a snapshot, by name: its data and its
// binaryData. A name is a ConfigMap key, as the API server allows (letters,
// digits, '-', '_' and '.'; never '.', '..' or a path), so that a file
// written under it stays in the revision's directory; a name in both data
// and binaryData is an error.
func FilesOf(snapshot *corev1.ConfigMap) (map[string][]byte, error) {
	files := make(map[string][]byte, len(snapshot.Data)+len(snapshot.BinaryData))
	var errs []error
	add := func(name string, content []byte) {
		if msgs := validation.IsConfigMapKey(name); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("file name %q: %s", name, strings.Join(msgs, "; ")))
			return
		}
		if _, dup := files[name]; dup {
			errs = append(errs, fmt.Errorf("file %q is both in data and in binaryData", name))
			return
		}
		files[name] = content
	}
	for name, content := range snapshot.Data {
		add(name, []byte(content))
	}
	for name, content := range snapshot.BinaryData {
		add(name, content)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", snapshot.Name, err)
	}
	return files, nil
}
