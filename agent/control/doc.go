// Package control is the agent's command channel: a small HTTP API on a
// unix socket (owner only) that `agent reload`, `agent status` and `agent
// stop` use, and the table that `agent status` prints.
//
//	GET  /status          the supervisor's Status as JSON
//	POST /reload[?wait=1] reload the code directory; with wait, answer when done
//	POST /stop            drain the workers and exit
package control
