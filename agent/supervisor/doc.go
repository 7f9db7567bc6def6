// Package supervisor runs the worker groups of a pod and replaces their
// workers one at a time when a new revision of the code is asked for.
//
// One goroutine owns every worker and reacts to events (a worker is ready, a
// worker exited, a timer fired, a reload or stop is asked) through a select;
// a reload is plain sequential code running on that goroutine, which keeps
// handling events while it waits. The operating system sits behind the small
// OS interface, so the state machine is tested without processes; package
// process provides the real one.
//
// The engine does not care who asks for a reload: Reload and RequestReload
// take a revision name and the directory of its code, whether it comes from
// a local command or from a controller, and Subscribe reports every change of
// the agent's status.
//
// The code, by concern: supervisor.go holds the options and the types and
// New; loop.go the event loop (Run, the requests it serves, its events, the
// drain); worker.go a worker's life (start, ready, stop, exit, restart with
// backoff); reload.go a reload and its rollback; status.go what the
// supervisor reports (Status, Subscribe, the agent's report).
package supervisor
