// Package process starts worker processes for the supervisor: the real side
// of its OS seam.
//
// A worker is started through a tiny shim, the agent binary itself run
// again: the shim sets LISTEN_PID to its own pid and execs the worker's
// command, so the worker keeps that pid and sd_listen_fds(3) accepts the
// sockets (Go's os/exec cannot set a variable after fork). The program that
// embeds this package must call RunShimIfAsked first thing in main (and in
// TestMain).
//
// Each worker gets its own NOTIFY_SOCKET, so a READY=1 is always the right
// worker's. Its output is passed through, each line prefixed with group and
// slot, and the last lines are kept for failure reports. One reaper owns
// every wait, so that as PID 1 it can also reap orphans without stealing a
// worker's exit status.
package process
