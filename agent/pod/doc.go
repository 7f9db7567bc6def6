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
package pod
