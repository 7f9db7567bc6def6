// Package sockets binds the listen addresses of the worker groups, once for
// the agent's whole life, and gives the files to pass to every worker (the
// systemd socket-activation protocol: fds from 3, in listen order). One
// accept queue per address outlives every worker, so replacing workers never
// refuses or resets a connection.
package sockets
