// Package agent puts the agent together: it binds the sockets, snapshots the
// code into a revision, runs the supervisor, and serves the control socket,
// the metrics and the signals (SIGHUP/SIGUSR1 reload, SIGTERM/SIGINT/SIGQUIT
// drain, SIGUSR2 passed on to the workers).
// It is what `agent run` runs; a Kubernetes pod watcher drives the same
// supervisor through Agent.Supervisor.
//
// Sub-packages: config (the config file), sockets (binding), revision
// (immutable code snapshots), supervisor (the reload engine), process (real
// worker processes behind the supervisor's OS seam), control (the control
// socket and status table) and metrics (Prometheus).
package agent
