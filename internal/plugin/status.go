package plugin

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// StatusReport is what status writes with -o json or -o yaml.
type StatusReport struct {
	// Name and Namespace of the pool.
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// Generation of the pool's spec; Status.ObservedGeneration lags it until
	// the controller has seen the latest spec.
	Generation int64 `json:"generation"`
	// Paused is spec.paused.
	Paused bool `json:"paused"`
	// RollbackTo is the revision a pending rollback asks for, if any.
	RollbackTo string `json:"rollbackTo,omitempty"`
	// Status is the pool's status as the controller wrote it.
	Status workersv1alpha1.WorkerPoolStatus `json:"status"`
	// Pods are the pods the pool governs, by name: those the selector
	// matches that are labelled softreload.dev/pool with the pool's name.
	Pods []PodReport `json:"pods"`
	// NotGoverned are the other pods the selector matches, by name: the
	// pool never writes to them and they hold no slot of its budget.
	NotGoverned []NotGovernedPod `json:"notGoverned,omitempty"`
	// Gateways are the pool's groups that are not reloadable, whose open
	// connections each agent counts in its report (the CONNECTIONS column).
	Gateways []string `json:"gateways,omitempty"`
}

// NotGovernedPod is a pod a pool's selector matches that the pool does not
// govern, and why.
type NotGovernedPod struct {
	Name string `json:"name"`
	// Pool is the pool the pod's softreload.dev/pool label names; "" when
	// the pod has no such label (and so no agent).
	Pool string `json:"pool,omitempty"`
	// Reason says why, in words.
	Reason string `json:"reason"`
}

func newStatusCommand(r *runner) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status POOL",
		Short: "Show a pool's rollout and what each of its pods runs",
		Long: `status shows a WorkerPool's revisions, pod counts and conditions, then one row
per pod the pool governs: the revision the controller wants it to run
(DESIRED), the revision its workers run (RUNNING), the agent's state, its
ready/total workers, and for a pool with groups that are not reloadable
(gateways) their open connections as the agent last counted them
(CONNECTIONS, every 5s). A pod whose agent has not reported yet shows as Pending.
Then the pods the selector matches that the pool does not govern (labelled
softreload.dev/pool for another pool, or not at all), and why.`,
		Example: `  kubectl softreload status web
  kubectl softreload status web -n shop -o yaml`,
		Args:              poolArg,
		ValidArgsFunction: r.completePools,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s, err := r.connect()
			if err != nil {
				return err
			}
			return s.status(cmd.Context(), args[0], output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Output format: json or yaml (default: tables)")
	return cmd
}

func (s *session) status(ctx context.Context, name, output string) error {
	wp, err := s.pool(ctx, name)
	if err != nil {
		return err
	}
	selector, err := metav1.LabelSelectorAsSelector(&wp.Spec.Selector)
	if err != nil {
		return fmt.Errorf("workerpool %q has an unusable selector: %w", name, err)
	}
	var pods corev1.PodList
	if err := s.c.List(ctx, &pods, client.InNamespace(s.ns), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return fmt.Errorf("listing the pods of workerpool %q (%s): %w", name, selector, err)
	}
	report := StatusReport{
		Name:       wp.Name,
		Namespace:  wp.Namespace,
		Generation: wp.Generation,
		Paused:     wp.Spec.Paused,
		RollbackTo: wp.Annotations[workersv1alpha1.RollbackToAnnotation],
		Status:     wp.Status,
		Pods:       make([]PodReport, 0, len(pods.Items)),
	}
	for _, g := range wp.Spec.Groups {
		if g.Reloadable != nil && !*g.Reloadable {
			report.Gateways = append(report.Gateways, g.Name)
		}
	}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if ng, ok := notGoverned(wp, pod); ok {
			report.NotGoverned = append(report.NotGoverned, ng)
			continue
		}
		report.Pods = append(report.Pods, podReport(pod))
	}
	sort.Slice(report.Pods, func(i, j int) bool { return report.Pods[i].Name < report.Pods[j].Name })
	sort.Slice(report.NotGoverned, func(i, j int) bool { return report.NotGoverned[i].Name < report.NotGoverned[j].Name })
	if output != "" {
		return printStructured(s.streams.Out, output, report)
	}
	return writeStatus(s.streams.Out, report, selector.String(), s.now())
}

// writeStatus writes the pool summary and the pod table.
func writeStatus(w io.Writer, r StatusReport, selector string, now time.Time) error {
	st := r.Status
	var b strings.Builder
	fmt.Fprintf(&b, "WorkerPool %s/%s\n", r.Namespace, r.Name)
	fmt.Fprintf(&b, "  Current revision:  %s\n", orNone(st.CurrentRevision))
	update := orNone(st.UpdateRevision)
	if st.UpdateRevision != "" && st.UpdateRevision != st.CurrentRevision {
		update += " (rolling out)"
	}
	fmt.Fprintf(&b, "  Update revision:   %s\n", update)
	if r.RollbackTo != "" {
		fmt.Fprintf(&b, "  Rollback to:       %s (requested)\n", r.RollbackTo)
	}
	paused := "no"
	if r.Paused {
		paused = "yes: no pod moves to a new revision until resumed"
	}
	fmt.Fprintf(&b, "  Paused:            %s\n", paused)
	fmt.Fprintf(&b, "  Pods:              %d total, %d updated, %d ready, %d reloading, %d failed\n",
		st.Pods, st.UpdatedPods, st.ReadyPods, st.ReloadingPods, st.FailedPods)
	if st.ObservedGeneration < r.Generation {
		fmt.Fprintf(&b, "  Note:              the controller has not seen the latest spec yet (observed generation %d, spec generation %d)\n",
			st.ObservedGeneration, r.Generation)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}

	if len(st.Conditions) == 0 {
		if _, err := fmt.Fprintln(w, "  Conditions:        none reported yet"); err != nil {
			return err
		}
	} else {
		if _, err := fmt.Fprintln(w, "  Conditions:"); err != nil {
			return err
		}
		rows := make([][]string, 0, len(st.Conditions))
		for _, c := range st.Conditions {
			rows = append(rows, []string{c.Type, string(c.Status), orNone(c.Reason), age(c.LastTransitionTime, now), strings.Join(strings.Fields(c.Message), " ")})
		}
		if err := table(w, "    ", []string{"TYPE", "STATUS", "REASON", "AGE", "MESSAGE"}, rows); err != nil {
			return err
		}
	}

	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	switch {
	case len(r.Pods) > 0:
		header := []string{"POD", "DESIRED", "RUNNING", "STATE", "WORKERS", "AGE", "MESSAGE"}
		if len(r.Gateways) > 0 {
			header = slices.Insert(header, 5, "CONNECTIONS")
		}
		rows := make([][]string, 0, len(r.Pods))
		for _, p := range r.Pods {
			row := podRow(p, now)
			if len(r.Gateways) > 0 {
				row = slices.Insert(row, 5, gatewayConnections(p, r.Gateways))
			}
			rows = append(rows, row)
		}
		if err := table(w, "", header, rows); err != nil {
			return err
		}
	case len(r.NotGoverned) > 0:
		if _, err := fmt.Fprintf(w, "No pod that the selector %s matches is labelled %s=%s.\n", selector, workersv1alpha1.PoolLabel, r.Name); err != nil {
			return err
		}
	default:
		_, err := fmt.Fprintf(w, "No pods in namespace %s match the selector %s.\n", r.Namespace, selector)
		return err
	}
	return writeNotGoverned(w, r.NotGoverned)
}

// gatewayConnections is a pod's CONNECTIONS: the open connections of each
// group that is not reloadable, as its agent last counted them
// (gateway=12), or "-" for a group its report does not have.
func gatewayConnections(p PodReport, gateways []string) string {
	var out []string
	for _, name := range gateways {
		n := none
		if p.Agent != nil {
			for _, g := range p.Agent.Groups {
				if g.Name == name {
					n = strconv.Itoa(int(g.Connections))
				}
			}
		}
		out = append(out, name+"="+n)
	}
	return strings.Join(out, ",")
}

// notGoverned says whether pod, which the pool's selector matches, is not
// the pool's, and why: a pod belongs to the pool its softreload.dev/pool
// label names, as the controller decides.
func notGoverned(wp *workersv1alpha1.WorkerPool, pod *corev1.Pod) (NotGovernedPod, bool) {
	owner, labelled := pod.Labels[workersv1alpha1.PoolLabel]
	switch {
	case owner == wp.Name:
		return NotGovernedPod{}, false
	case labelled:
		return NotGovernedPod{Name: pod.Name, Pool: owner,
			Reason: fmt.Sprintf("belongs to WorkerPool %s (%s=%s)", owner, workersv1alpha1.PoolLabel, owner)}, true
	default:
		return NotGovernedPod{Name: pod.Name,
			Reason: fmt.Sprintf("no %s label: no agent", workersv1alpha1.PoolLabel)}, true
	}
}

// writeNotGoverned writes the pods the selector matches that the pool does
// not govern, if any.
func writeNotGoverned(w io.Writer, pods []NotGovernedPod) error {
	if len(pods) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\nSelected but not governed (the pool never writes to them; they hold no slot of its budget):\n"); err != nil {
		return err
	}
	rows := make([][]string, 0, len(pods))
	for _, p := range pods {
		rows = append(rows, []string{p.Name, p.Reason})
	}
	return table(w, "  ", []string{"POD", "WHY"}, rows)
}
