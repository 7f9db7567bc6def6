package pod

import (
	"fmt"

	"github.com/softreload/softreload/internal/injected"
)

// Image mode: a code image reaches the pod through a container of its own,
// the code container, which runs `agent code-sync` from the shared bin
// volume. Only the image of a running container can change, never its
// command or environment, so the container learns which image it runs, and
// which directory of it holds the code, from pod annotations that the
// controller writes in the same write as the new image
// (v1alpha1.CodeImageAnnotation, v1alpha1.CodePathAnnotation), read through
// the downward API as the container starts. The names are
// internal/injected's, which the injection webhook shares.
const (
	// CodeContainer is the name of the code container.
	CodeContainer = injected.CodeContainer
	// EnvCodeImage and EnvCodePath are the code container's variables
	// holding the two annotations.
	EnvCodeImage = injected.EnvCodeImage
	EnvCodePath  = injected.EnvCodePath
)

// ImageCodeDir is where the code container copies the code at path in
// image ref under the code root, and where the agent looks for it
// (injected.ImageCodeDir).
func ImageCodeDir(root, ref, path string) string { return injected.ImageCodeDir(root, ref, path) }

// DeliverImage copies the code at path, in the code container's own file
// system, to where the agent looks for the code of image ref under root.
// The directory appears whole or not at all; one that is there already
// must hold the same files.
func DeliverImage(root, ref, path string) (string, error) {
	switch {
	case ref == "":
		return "", fmt.Errorf("no code image named: %s is empty (the downward API sets it from the pod's annotation)", EnvCodeImage)
	case path == "":
		return "", fmt.Errorf("no code path named: %s is empty (the downward API sets it from the pod's annotation)", EnvCodePath)
	}
	dir := ImageCodeDir(root, ref, path)
	if err := CopyTree(path, dir); err != nil {
		return "", fmt.Errorf("delivering the code of image %s: %w", ref, err)
	}
	return dir, nil
}
