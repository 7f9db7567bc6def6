package pod

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
)

// Image mode: a code image reaches the pod through a container of its own,
// the code container, which runs `agent code-sync` from the shared bin
// volume. Only the image of a running container can change, never its
// command or environment, so the container learns which image it runs, and
// which directory of it holds the code, from pod annotations that the
// controller writes in the same write as the new image
// (v1alpha1.CodeImageAnnotation, v1alpha1.CodePathAnnotation), read through
// the downward API as the container starts.
const (
	// CodeContainer is the name of the code container.
	CodeContainer = "softreload-code"
	// EnvCodeImage and EnvCodePath are the code container's variables
	// holding the two annotations.
	EnvCodeImage = "SOFTRELOAD_CODE_IMAGE"
	EnvCodePath  = "SOFTRELOAD_CODE_PATH"
)

// ImageCodeDir is where the code container copies the code at path in
// image ref under the code root, and where the agent looks for it: one
// directory per image and path, so a restarted code container never writes
// over code that workers run.
func ImageCodeDir(root, ref, path string) string {
	sum := sha256.Sum256([]byte(ref + "\x00" + path))
	return filepath.Join(root, "images", hex.EncodeToString(sum[:8]))
}

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
