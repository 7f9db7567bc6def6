package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// none stands for a value that is not there, as kubectl shows it.
const none = "-"

// StatePending is the state shown for a pod whose agent has not reported.
const StatePending = "Pending"

// StateUnknown is the state shown for a pod whose report cannot be read.
const StateUnknown = "Unknown"

// maxMessage is how many characters of an agent's message fit a table.
const maxMessage = 60

// PodReport is what status says about one pod.
type PodReport struct {
	// Name of the pod.
	Name string `json:"name"`
	// DesiredRevision is the revision the controller asked the pod to run.
	DesiredRevision string `json:"desiredRevision,omitempty"`
	// State is the agent's state, Pending when it has not reported yet, or
	// Unknown when its report cannot be read.
	State string `json:"state"`
	// Agent is the agent's report as it wrote it, if it did.
	Agent *workersv1alpha1.AgentStatus `json:"agent,omitempty"`
	// Problem says why the report cannot be read.
	Problem string `json:"problem,omitempty"`
	// CreatedAt is when the pod was created.
	CreatedAt metav1.Time `json:"createdAt"`
}

// podReport reads a pod's annotations.
func podReport(pod *corev1.Pod) PodReport {
	r := PodReport{
		Name:            pod.Name,
		DesiredRevision: pod.Annotations[workersv1alpha1.DesiredRevisionAnnotation],
		State:           StatePending,
		CreatedAt:       pod.CreationTimestamp,
	}
	st, err := workersv1alpha1.ParseAgentStatus(pod.Annotations[workersv1alpha1.StatusAnnotation])
	if err != nil {
		r.State = StateUnknown
		r.Problem = err.Error()
		return r
	}
	if st == nil {
		return r
	}
	r.Agent = st
	r.State = string(st.State)
	if r.State == "" {
		r.State = StateUnknown
	}
	return r
}

// podRow is a pod's row in the status table: POD, DESIRED, RUNNING, STATE,
// WORKERS, AGE, MESSAGE.
func podRow(r PodReport, now time.Time) []string {
	running, workers, message := none, none, r.Problem
	if a := r.Agent; a != nil {
		running = orNone(a.Running)
		if a.Running == "" && a.State == workersv1alpha1.AgentReady {
			// A Ready report is about the revision that runs.
			running = orNone(a.Revision)
		}
		workers = fmt.Sprintf("%d/%d", a.Ready, a.Total)
		if message == "" {
			message = a.Message
		}
		if a.State == workersv1alpha1.AgentReloading && a.Revision != "" && message == "" {
			message = "loading " + a.Revision
		}
		if old := a.Outdated(); len(old) > 0 && message == "" {
			message = fmt.Sprintf("group %s on an older spec (%s): needs a new pod", old[0].Name, old[0].Outdated)
		}
	}
	return []string{r.Name, orNone(r.DesiredRevision), running, r.State, workers, age(r.CreatedAt, now), truncate(message, maxMessage)}
}

// truncate keeps the first line of s and at most n characters of it,
// marking what it cut with "...".
func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	cut := false
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s, cut = strings.TrimSpace(s[:i]), true
	}
	if r := []rune(s); len(r) > n {
		s, cut = string(r[:max(n-3, 0)]), true
	}
	if cut {
		s += "..."
	}
	return s
}

// age is how long ago t was, the way kubectl shows ages; "-" for no time.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return none
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

// table writes rows under a header, aligned like kubectl get.
func table(w io.Writer, indent string, header []string, rows [][]string) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, row := range append([][]string{header}, rows...) {
		if _, err := fmt.Fprintln(tw, indent+strings.Join(row, "\t")); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// An empty last cell leaves the padding of the one before it.
	var out strings.Builder
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		out.WriteString(strings.TrimRight(line, " \n"))
		if strings.HasSuffix(line, "\n") {
			out.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// Output formats other than the default table.
const (
	outputJSON = "json"
	outputYAML = "yaml"
)

// checkOutput refuses an output format the command does not write.
func checkOutput(format string) error {
	switch format {
	case "", outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use json or yaml, or leave -o out for a table", format)
}

// printStructured writes v as JSON or YAML.
func printStructured(w io.Writer, format string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == outputYAML {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return err
		}
	} else {
		data = append(data, '\n')
	}
	_, err = w.Write(data)
	return err
}
