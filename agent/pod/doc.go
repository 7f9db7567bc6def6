// Package pod joins the agent to the pod protocol. With POD_NAME and
// POD_NAMESPACE set, the agent watches its own Pod for the revision the
// controller wants (the softreload.dev/desired-revision annotation), fetches
// that revision's snapshot, writes its files into a fresh immutable
// directory, reloads through the same supervisor as standalone mode, and
// publishes what it runs in the softreload.dev/status annotation.
//
// It keeps no state that the API server does not hold: a restarted agent
// reads its last report from the pod and never tries a revision again that
// it already failed. When the API server is unreachable, the workers keep
// serving; the agent retries with backoff and reports once it is back.
//
// The files, by concern:
//   - agent.go: the types, New, and Run's loop, which owns the agent's state
//   - watch.go: watching the agent's own pod
//   - fetch.go: fetching a revision (its snapshot, or a code image's code)
//   - report.go: what the agent reports, and publishing it to the pod
//   - running.go: the record of what runs, kept for a restart
//   - codedir.go: the revision directories in the code root
//   - engine.go: SupervisorEngine, the supervisor as the agent's Engine
//   - client.go and image.go: the API client, and the code image's names
package pod
