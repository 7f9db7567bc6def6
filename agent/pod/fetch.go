package pod

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
	"github.com/softreload/softreload/internal/poolrevision"
)

// fetch reads revision rev's snapshot and puts its code in place: the
// snapshot's files in a new revision directory, or, for a code image, the
// directory the code container delivers. Code that the workers run
// already, in a directory of dirs (by Revision.Code), is not written
// again: rev gets that directory. It tells progress what it waits for.
// Only the revision itself can make it fail: a snapshot that cannot be read
// yet is waited for until ctx is done.
func (a *Agent) fetch(ctx context.Context, rev string, dirs map[string]string, progress func(string)) (Revision, error) {
	cm, err := a.readSnapshot(ctx, rev, progress)
	if err != nil {
		return Revision{}, err
	}
	spec, err := poolrevision.SpecFrom(cm)
	if err != nil {
		return Revision{}, err
	}
	code := codeOf(spec, cm)
	if spec.Image != nil {
		dir, err := a.waitForImage(ctx, rev, *spec.Image, progress)
		if err != nil {
			return Revision{}, err
		}
		return Revision{Name: rev, Spec: spec, Dir: dir, Code: code}, nil
	}
	if dir, ok := dirs[code]; ok {
		if _, err := os.Stat(dir); err == nil {
			a.log.Info("The revision's code is the code the workers run: keeping its directory", "revision", rev, "dir", dir)
			return Revision{Name: rev, Spec: spec, Dir: dir, Code: code}, nil
		}
	}
	files, err := poolrevision.FilesOf(cm)
	if err != nil {
		return Revision{}, err
	}
	dir, err := WriteRevision(a.opts.CodeRoot, rev, files)
	if err != nil {
		return Revision{}, err
	}
	return Revision{Name: rev, Spec: spec, Dir: dir, Code: code}, nil
}

// codeOf says what the code of a revision is, apart from its groups and
// strategy: a hash of its snapshot's files, or of its code image, and of
// the restart it asks for (kubectl softreload reload makes a revision of
// the same files that must replace every worker).
func codeOf(spec poolrevision.Spec, snapshot *corev1.ConfigMap) string {
	return poolrevision.Hash(poolrevision.Spec{Image: spec.Image, RestartedAt: spec.RestartedAt}, poolrevision.CodeOf(snapshot))
}

// readSnapshot reads revision rev's snapshot, retrying with backoff for as
// long as it does not exist, may not be read (the agents' Role names a new
// snapshot a moment after the controller makes it, and not at all while the
// manager is down) or the API server cannot be reached.
func (a *Agent) readSnapshot(ctx context.Context, rev string, progress func(string)) (*corev1.ConfigMap, error) {
	name := poolrevision.SnapshotName(a.opts.Pool, rev)
	start := time.Now()
	var (
		cm      *corev1.ConfigMap
		lastWhy string
	)
	err := retry(ctx, func() (bool, error) {
		var err error
		cm, err = a.opts.Client.GetConfigMap(ctx, a.opts.Namespace, name)
		var why string
		switch {
		case err == nil:
			return true, nil
		case ctx.Err() != nil:
			return false, ctx.Err()
		case apierrors.IsNotFound(err):
			why = "it does not exist (yet)"
		case apierrors.IsForbidden(err):
			why = "the agents' Role does not allow reading it (yet)"
		default:
			why = "the API server cannot be reached"
		}
		if why != lastWhy {
			a.log.Info("Waiting for the revision's snapshot", "revision", rev, "snapshot", name, "why", why, "err", err)
			lastWhy = why
		}
		progress(fmt.Sprintf("waiting for snapshot %s of revision %s: %s; for %v so far", name, rev, why, time.Since(start).Round(time.Second)))
		return false, nil
	})
	return cm, err
}

// waitForImage waits until the code container has delivered the code of
// img into the code root, for up to ImageTimeout.
func (a *Agent) waitForImage(ctx context.Context, rev string, img v1alpha1.ImageCodeSource, progress func(string)) (string, error) {
	dir := ImageCodeDir(a.opts.CodeRoot, img.Reference, img.Path)
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, a.opts.ImageTimeout)
	defer cancel()
	var lost error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		if _, err := os.Stat(dir); err == nil {
			return true, nil
		}
		p := a.pod.Load()
		state, found := codeContainerState(p)
		if p != nil && !found {
			lost = fmt.Errorf("revision %s takes its code from image %s, but this pod has no %s container: "+
				"pods created while their pool took its code from a ConfigMap have none; recreate them (kubectl rollout restart)",
				rev, img.Reference, CodeContainer)
			return false, lost
		}
		progress(fmt.Sprintf("waiting for container %s to deliver image %s (path %s): %v of %v%s",
			CodeContainer, img.Reference, img.Path, time.Since(start).Truncate(5*time.Second), a.opts.ImageTimeout, state))
		return false, nil
	})
	switch {
	case err == nil:
		return dir, nil
	case lost != nil:
		return "", lost
	case ctx.Err() == context.DeadlineExceeded:
		state, _ := codeContainerState(a.pod.Load())
		return "", fmt.Errorf("revision %s: container %s did not deliver image %s (path %s) within %v%s",
			rev, CodeContainer, img.Reference, img.Path, a.opts.ImageTimeout, state)
	default:
		return "", err
	}
}

// codeContainerState describes the code container of pod p for a report
// ("" while it runs), and says whether p has one.
func codeContainerState(p *corev1.Pod) (string, bool) {
	if p == nil {
		return "", false
	}
	if !slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == CodeContainer }) {
		return "", false
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != CodeContainer {
			continue
		}
		switch {
		case cs.State.Waiting != nil:
			s := fmt.Sprintf("; the container is waiting: %s", cs.State.Waiting.Reason)
			if m := cs.State.Waiting.Message; m != "" {
				s += ": " + m
			}
			if t := cs.LastTerminationState.Terminated; t != nil && t.Message != "" {
				s += "; it last exited with: " + strings.TrimSpace(t.Message)
			}
			return s, true
		case cs.State.Terminated != nil:
			return fmt.Sprintf("; the container exited (%s, code %d): %s", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode, strings.TrimSpace(cs.State.Terminated.Message)), true
		}
	}
	return "", true
}
