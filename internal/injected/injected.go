package injected

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
)

// Env names the agent reads in a pod; the webhook sets them.
const (
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	EnvPool         = "SOFTRELOAD_POOL"
	EnvCodeRoot     = "SOFTRELOAD_CODE_ROOT"
)

// Image mode: a code image reaches the pod through a container of its own,
// the code container, which runs `agent code-sync`. It learns which image
// it runs, and which directory of it holds the code, from the pod's
// annotations, read through the downward API into two variables.
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
