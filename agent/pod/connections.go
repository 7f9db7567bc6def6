package pod

import (
	"log/slog"
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
			// The workers and groups as they run now, with the groups
			// of the status to pass on.
			now := status()
			now.Agent = last
			counted, err := process.WithConnections(now)
			st := counted.Agent
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
