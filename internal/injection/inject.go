package injection

import (
	"cmp"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/injected"
)

// Names and paths of what the webhook adds to a pod. The agent in the pod
// relies on the same paths.
const (
	// InstallContainer is the init container that copies the agent binary
	// into the shared bin volume. Its presence marks a pod as injected.
	InstallContainer = "softreload-install"
	// CodeContainer is the container of a code image (image mode). The
	// controller patches its image, and the annotations that name it, to
	// roll out a new code image; the kubelet restarts this container alone,
	// and it copies the new code into the code volume.
	CodeContainer = injected.CodeContainer

	binVolume  = "softreload-bin"
	codeVolume = "softreload-code"

	// BinDir holds the agent binary in every container of the pod.
	BinDir = "/softreload/bin"
	// AgentPath is the agent binary, the new entrypoint of the chosen
	// container.
	AgentPath = BinDir + "/agent"
	// CodeRoot is the code volume: the agent writes each revision's files
	// into an immutable directory under it, and in image mode the code
	// container copies the image's code under ImageCodeDir.
	CodeRoot = "/softreload/code"
)

// Env names the agent reads in a pod.
const (
	EnvPodName      = injected.EnvPodName
	EnvPodNamespace = injected.EnvPodNamespace
	EnvPool         = injected.EnvPool
	EnvCodeRoot     = injected.EnvCodeRoot
)

// ImageCodeDir is where the code container of image mode copies the code at
// path in image ref in the pod, and where the agent looks for it.
func ImageCodeDir(ref, path string) string { return injected.ImageCodeDir(CodeRoot, ref, path) }

// Start is what a new pod starts at.
type Start struct {
	// Revision is the revision the pod starts at; "" while the pool has
	// none (the controller sends the first one).
	Revision string
	// Image is the code image of that revision, nil when its code comes
	// from a ConfigMap.
	Image *workersv1alpha1.ImageCodeSource
}

// Options are what the webhook needs besides the pod and its pool.
type Options struct {
	// AgentImage is the image that holds the agent binary at /agent.
	AgentImage string
}

// Inject changes pod so that the agent runs the pool's groups in it,
// starting at start. It is idempotent: an injected pod is left as it is,
// and Inject reports false.
func Inject(pod *corev1.Pod, pool *workersv1alpha1.WorkerPool, start Start, opts Options) (bool, error) {
	if slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == InstallContainer }) {
		return false, nil
	}
	target, err := targetContainer(pod, pool)
	if err != nil {
		return false, err
	}
	if opts.AgentImage == "" {
		return false, fmt.Errorf("no agent image is configured (the manager's --agent-image flag)")
	}

	pod.Spec.Volumes = append(pod.Spec.Volumes,
		corev1.Volume{Name: binVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: codeVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	)
	binMount := corev1.VolumeMount{Name: binVolume, MountPath: BinDir}
	codeMount := corev1.VolumeMount{Name: codeVolume, MountPath: CodeRoot}

	pod.Spec.InitContainers = append([]corev1.Container{{
		Name:         InstallContainer,
		Image:        opts.AgentImage,
		Command:      []string{"/agent", "install", AgentPath},
		VolumeMounts: []corev1.VolumeMount{binMount},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}}, pod.Spec.InitContainers...)

	c := &pod.Spec.Containers[target]
	// The agent is the container's entrypoint (PID 1); the groups it runs
	// come from the pool's revision, not from the container's command.
	c.Command = []string{AgentPath, "pod"}
	c.Args = nil
	c.Env = append(c.Env,
		corev1.EnvVar{Name: EnvPodName, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		corev1.EnvVar{Name: EnvPodNamespace, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		corev1.EnvVar{Name: EnvPool, Value: pool.Name},
		corev1.EnvVar{Name: EnvCodeRoot, Value: CodeRoot},
	)
	c.VolumeMounts = append(c.VolumeMounts, binMount, codeMount)

	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	// A pool that takes its code from an image, now or at the revision the
	// pod starts at, gets a code container: the image of that revision, or
	// the spec's while it has none.
	if img := cmp.Or(start.Image, pool.Spec.Code.Image); img != nil {
		pod.Spec.Containers = append(pod.Spec.Containers, codeContainer(binMount, codeMount))
		c := &pod.Spec.Containers[len(pod.Spec.Containers)-1]
		c.Image = img.Reference
		pod.Annotations[workersv1alpha1.CodeImageAnnotation] = img.Reference
		pod.Annotations[workersv1alpha1.CodePathAnnotation] = img.Path
	}
	if start.Revision != "" {
		pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation] = start.Revision
	}
	return true, nil
}

// codeContainer is the code container of image mode, but for its image.
func codeContainer(mounts ...corev1.VolumeMount) corev1.Container {
	annotation := func(key string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + key + "']"}}
	}
	return corev1.Container{
		Name: CodeContainer,
		// The agent binary, from the shared volume, so any code image
		// works, even one with no shell or cp.
		Command: []string{AgentPath, "code-sync", "--root", CodeRoot},
		// Its image can change while the pod runs, its command cannot: the
		// annotations that the controller writes with each new image say
		// what it runs, read as the container starts.
		Env: []corev1.EnvVar{
			{Name: injected.EnvCodeImage, ValueFrom: annotation(workersv1alpha1.CodeImageAnnotation)},
			{Name: injected.EnvCodePath, ValueFrom: annotation(workersv1alpha1.CodePathAnnotation)},
		},
		VolumeMounts: mounts,
		// What a failed delivery said reaches the container's status, and
		// the agent's report from there.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// targetContainer returns the index of the container the agent runs in.
func targetContainer(pod *corev1.Pod, pool *workersv1alpha1.WorkerPool) (int, error) {
	if len(pod.Spec.Containers) == 0 {
		return 0, fmt.Errorf("the pod has no containers")
	}
	name := pool.Spec.Container
	if name == "" {
		return 0, nil
	}
	for i, c := range pod.Spec.Containers {
		if c.Name == name {
			return i, nil
		}
	}
	names := make([]string, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	return 0, fmt.Errorf("WorkerPool %s names container %q (spec.container), but the pod has only %v", pool.Name, name, names)
}

// StartRevision is the revision a new pod starts at: the one being rolled
// out, or, with none, the one every pod runs. A revision that failed on a
// pod (Degraded, ReloadFailed) is not started on new pods while there is a
// good one: the rollout holds, and new pods start with working code. A new
// pool has no revision yet; the controller sets it once it has made the
// first.
func StartRevision(pool *workersv1alpha1.WorkerPool) string {
	st := pool.Status
	failed := meta.IsStatusConditionTrue(st.Conditions, workersv1alpha1.ConditionDegraded) &&
		meta.FindStatusCondition(st.Conditions, workersv1alpha1.ConditionDegraded).Reason == workersv1alpha1.ReasonReloadFailed
	if st.UpdateRevision == "" || failed && st.CurrentRevision != "" {
		return st.CurrentRevision
	}
	return st.UpdateRevision
}
