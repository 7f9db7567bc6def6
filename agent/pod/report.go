package pod

import (
	"context"
	"encoding/json"
	"time"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// report publishes the pod's status: the engine's, except that a desired
// revision that failed here is reported Failed (with what runs instead)
// until the controller asks for another, and a desired revision whose code
// is not there yet is reported Reloading, saying what the agent waits for.
func (l *loop) report() {
	if !l.seen {
		// Nothing until the pod's last report has been read: writing over
		// it first would lose a failure it remembers.
		return
	}
	st := statusFor(l.desired, l.last, l.failed)
	if l.fetching != "" && l.fetching == l.desired && l.waiting != "" {
		if st.Running == "" && l.last.State == v1alpha1.AgentReady {
			st.Running = l.last.Revision
		}
		st.Revision, st.State, st.Message = l.desired, v1alpha1.AgentReloading, l.waiting
	}
	if st.Revision == "" && st.State == "" {
		return
	}
	// The controller refuses a report whose message is too long; what the
	// agent says itself (a fetch's error) may be.
	st.Message = v1alpha1.ShortenAgentMessage(st.Message)
	replaceLatest(l.a.publish, st)
}

// statusFor is the engine's status, except that a desired revision that
// failed here is reported Failed (with what runs instead).
func statusFor(desired string, engine v1alpha1.AgentStatus, failed map[string]string) v1alpha1.AgentStatus {
	why, bad := failed[desired]
	if !bad || engine.State == v1alpha1.AgentReloading {
		return engine
	}
	st := engine
	st.Revision, st.State, st.Message = desired, v1alpha1.AgentFailed, why
	if engine.State == v1alpha1.AgentReady {
		st.Running = engine.Revision
	}
	return st
}

// publisher writes the newest report to the pod's status annotation,
// retrying with backoff while the API server cannot be reached; a report
// that a newer one replaced is never written. A reload is written Reloading
// only once it has lasted v1alpha1.ReloadingReportDelay: one that ends
// sooner is written once, with its outcome.
func (a *Agent) publisher(ctx context.Context) {
	var written v1alpha1.AgentStatus
	for {
		var st v1alpha1.AgentStatus
		select {
		case <-ctx.Done():
			return
		case st = <-a.publish:
		}
		if st.State == v1alpha1.AgentReloading && written.State != v1alpha1.AgentReloading {
			var ok bool
			if st, ok = a.outcomeWithin(ctx, st, v1alpha1.ReloadingReportDelay); !ok {
				return
			}
		}
		backoff := newBackoff()
		for !st.Same(written) {
			err := a.patchStatus(ctx, st)
			if err == nil {
				written = st
				break
			}
			a.log.Info("Cannot publish the status yet, retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case st = <-a.publish: // retry with the newest report
			case <-time.After(backoff.Step()):
			}
		}
	}
}

// outcomeWithin returns the newest report once it is no longer Reloading,
// or after d with the newest Reloading report; false if ctx ends first.
func (a *Agent) outcomeWithin(ctx context.Context, st v1alpha1.AgentStatus, d time.Duration) (v1alpha1.AgentStatus, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for st.State == v1alpha1.AgentReloading {
		select {
		case <-ctx.Done():
			return st, false
		case st = <-a.publish:
		case <-timer.C:
			return st, true
		}
	}
	return st, true
}

func (a *Agent) patchStatus(ctx context.Context, st v1alpha1.AgentStatus) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{v1alpha1.StatusAnnotation: string(raw)}}})
	if err != nil {
		return err
	}
	return a.opts.Client.MergePatchPod(ctx, a.opts.Namespace, a.opts.PodName, patch)
}
