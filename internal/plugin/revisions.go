package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	workersv1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// keptSnapshots returns the revisions of a pool whose snapshot ConfigMaps
// still exist, mapped to the ConfigMap names.
func (s *session) keptSnapshots(ctx context.Context, pool string) (map[string]string, error) {
	var cms corev1.ConfigMapList
	if err := s.c.List(ctx, &cms, client.InNamespace(s.ns), client.MatchingLabels{workersv1alpha1.PoolNameLabel: pool}); err != nil {
		return nil, fmt.Errorf("listing the revision snapshots of workerpool %q in namespace %q: %w", pool, s.ns, err)
	}
	kept := make(map[string]string, len(cms.Items))
	for _, cm := range cms.Items {
		if rev := cm.Labels[workersv1alpha1.RevisionLabel]; rev != "" && cm.DeletionTimestamp.IsZero() {
			kept[rev] = cm.Name
		}
	}
	return kept, nil
}

// defaultRollbackTarget is where rollback goes without --to: the newest
// revision older than the current one in the history that completed (every
// pod ran it) and whose snapshot is still kept. The error says what is
// missing when there is none.
func defaultRollbackTarget(st workersv1alpha1.WorkerPoolStatus, kept map[string]string) (string, error) {
	current := st.CurrentRevision
	if current == "" {
		return "", fmt.Errorf("nothing to roll back to: the pool has no current revision yet (no revision has completed on every pod)")
	}
	older := st.History
	for i, rec := range st.History {
		if rec.Revision == current {
			older = st.History[i+1:]
			break
		}
	}
	var skipped []string
	seen := map[string]bool{current: true}
	for _, rec := range older {
		if seen[rec.Revision] {
			continue
		}
		seen[rec.Revision] = true
		switch {
		case rec.CompletedAt == nil:
			why := "never completed"
			if rec.Result != "" {
				why += " (" + rec.Result + ")"
			}
			skipped = append(skipped, rec.Revision+" "+why)
		case kept[rec.Revision] == "":
			skipped = append(skipped, rec.Revision+" has no kept snapshot")
		default:
			return rec.Revision, nil
		}
	}
	if len(skipped) == 0 {
		return "", fmt.Errorf("nothing to roll back to: the history has no revision older than the current one, %s", current)
	}
	return "", fmt.Errorf("nothing to roll back to: no revision older than the current one, %s, completed and still has a snapshot: %s",
		current, strings.Join(skipped, "; "))
}

// checkRollbackTarget says why rev cannot be rolled back to, if it cannot.
func checkRollbackTarget(st workersv1alpha1.WorkerPoolStatus, kept map[string]string, rev string) error {
	if kept[rev] != "" {
		return nil
	}
	keptList := "none"
	if len(kept) > 0 {
		keptList = strings.Join(sortedKeys(kept), ", ")
	}
	for _, rec := range st.History {
		if rec.Revision == rev {
			return fmt.Errorf("revision %s is in the history but its snapshot is no longer kept (see spec.revisionHistoryLimit); revisions that can be rolled back to: %s", rev, keptList)
		}
	}
	return fmt.Errorf("no revision %s: it is neither in the history nor kept as a snapshot; revisions that can be rolled back to: %s", rev, keptList)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
