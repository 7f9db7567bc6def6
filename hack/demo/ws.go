package main

import (
	"fmt"
	"time"

	"github.com/softreload/softreload/internal/local"
)

// wsPause is the pause of each pod's WebSocket client between an answer
// and its next message, on the one connection it opened to the pod's
// gateway.
const wsPause = 200 * time.Millisecond

// describeClient is a client's column of the demo's table: the gateway's
// pid, its open connections as the agent reports them, and the greeting of
// the newest answer on this client's connection (its revision is in
// RUNNING).
func describeClient(c *local.GatewayClient, connections string) string {
	if err := c.Err(); err != nil {
		return "pid " + c.PID() + ": our connection lost: " + err.Error()
	}
	greeting := local.AnswerGreeting(c.Last())
	if greeting == "" {
		greeting = "-"
	}
	return fmt.Sprintf("pid %s, %s: %s", c.PID(), connections, greeting)
}
