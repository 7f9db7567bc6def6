package injection

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
)

// Path is where the webhook server serves the injector.
const Path = "/mutate-v1-pod"

// +kubebuilder:webhook:path=/mutate-v1-pod,mutating=true,failurePolicy=fail,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=inject.softreload.dev,admissionReviewVersions=v1,reinvocationPolicy=Never
// +kubebuilder:rbac:groups=workers.softreload.dev,resources=workerpools,verbs=get;list;watch

// Injector is the admission handler that injects the agent into pods.
type Injector struct {
	reader  client.Reader
	decoder admission.Decoder
	opts    Options
}

var _ admission.Handler = (*Injector)(nil)

// NewInjector returns an injector that looks pools up through reader.
func NewInjector(reader client.Reader, decoder admission.Decoder, opts Options) *Injector {
	return &Injector{reader: reader, decoder: decoder, opts: opts}
}

// Register serves the injector on the webhook server.
func (i *Injector) Register(server webhook.Server) {
	server.Register(Path, &webhook.Admission{Handler: i})
}

// Handle injects the agent into a pod labelled with a pool's name. A pod
// whose label names no pool is refused with a message that says so: it would
// otherwise run without the agent, and its code would never reload. Its
// workload controller retries, so the pods come up once the pool exists.
func (i *Injector) Handle(ctx context.Context, req admission.Request) admission.Response {
	pod := &corev1.Pod{}
	if err := i.decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decoding the pod: %w", err))
	}
	name, ok := pod.Labels[workersv1alpha1.PoolLabel]
	if !ok {
		return admission.Allowed("no " + workersv1alpha1.PoolLabel + " label")
	}
	pool := &workersv1alpha1.WorkerPool{}
	err := i.reader.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: name}, pool)
	switch {
	case apierrors.IsNotFound(err):
		return admission.Denied(fmt.Sprintf("label %s=%s names no WorkerPool in namespace %s: create the WorkerPool first, or remove the label to run the pod without softreload",
			workersv1alpha1.PoolLabel, name, req.Namespace))
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading WorkerPool %s/%s: %w", req.Namespace, name, err))
	}
	start, err := i.startOf(ctx, pool)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	changed, err := Inject(pod, pool, start, i.opts)
	if err != nil {
		return admission.Denied(err.Error())
	}
	if !changed {
		return admission.Allowed("the agent is already injected")
	}
	mutated, err := json.Marshal(pod)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, mutated)
}

// startOf is what a new pod of pool starts at: StartRevision, with its code
// image read from its snapshot. After a rollback the spec may name an image
// that failed, so a pod starts with the image of its revision, never the
// spec's, unless the pool has no revision yet.
func (i *Injector) startOf(ctx context.Context, pool *workersv1alpha1.WorkerPool) (Start, error) {
	start := Start{Revision: StartRevision(pool)}
	if start.Revision == "" {
		start.Image = pool.Spec.Code.Image
		return start, nil
	}
	name := poolrevision.SnapshotName(pool.Name, start.Revision)
	cm := &corev1.ConfigMap{}
	err := i.reader.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: name}, cm)
	if apierrors.IsNotFound(err) {
		// No snapshot to tell (a pool made by hand, say): the spec's image.
		start.Image = pool.Spec.Code.Image
		return start, nil
	}
	if err != nil {
		return Start{}, fmt.Errorf("reading snapshot %s of revision %s, which new pods of WorkerPool %s start at: %w", name, start.Revision, pool.Name, err)
	}
	spec, err := poolrevision.SpecFrom(cm)
	if err != nil {
		return Start{}, fmt.Errorf("revision %s, which new pods of WorkerPool %s start at: %w", start.Revision, pool.Name, err)
	}
	start.Image = spec.Image
	return start, nil
}
