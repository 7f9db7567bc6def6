package pod

import (
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/softreload/softreload/agent/process"
	"github.com/softreload/softreload/agent/supervisor"
	v1alpha1 "github.com/softreload/softreload/api/v1alpha1"
)

// ConnectionsInterval is how often the agent counts the open connections
// of its groups that are not reloadable (gateways) for its report: a
// change of the count rewrites the pod's report at most that often.
const ConnectionsInterval = 5 * time.Second

// withConnections passes on the engine's statuses from in, each with the
// open connections of the groups that are not reloadable counted
// (AgentGroupStatus.Connections, through process.WithConnections on the
// workers status returns), and counts them again every interval, passing
// the status on when a count changed.
// The returned func stops it and calls cancel.
func withConnections(in <-chan v1alpha1.AgentStatus, cancel func(), status func() supervisor.Status,
	interval time.Duration, log *slog.Logger) (<-chan v1alpha1.AgentStatus, func()) {
	out := make(chan v1alpha1.AgentStatus, 1)
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var last, sent v1alpha1.AgentStatus
		have, sentAny, warned := false, false, false
		for {
			select {
			case <-done:
				return
			case st, ok := <-in:
				if !ok {
					return
				}
				last, have = st, true
			case <-tick.C:
				if !have {
					continue
				}
			}
			counted, err := process.WithConnections(status())
			st := withCounts(last, counted.Agent.Groups)
			if err != nil && !warned {
				log.Info("Cannot count the connections of the groups that are not reloadable", "err", err)
				warned = true
			}
			if sentAny && st.Same(sent) {
				continue
			}
			sent, sentAny = st, true
			select { // the newest status replaces one not yet taken
			case <-out:
			default:
			}
			out <- st
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			close(done)
			cancel()
		})
	}
}

// withCounts returns a with the connection counts of groups, by name.
func withCounts(a v1alpha1.AgentStatus, groups []v1alpha1.AgentGroupStatus) v1alpha1.AgentStatus {
	a.Groups = slices.Clone(a.Groups)
	for i := range a.Groups {
		for _, g := range groups {
			if g.Name == a.Groups[i].Name {
				a.Groups[i].Connections = g.Connections
			}
		}
	}
	return a
}
