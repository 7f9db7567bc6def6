package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/softreload/softreload/internal/local"
)

// wsClient is one WebSocket client of a pod's gateway: it sends a message
// every wsPause on the one connection it opened, and keeps the newest
// answer, which the pod's business workers wrote.
type wsClient struct {
	g    *local.Gateway
	quit chan struct{}
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	last string
	err  error
}

// wsPause is the client's pause between an answer and its next message.
const wsPause = 200 * time.Millisecond

// startWSClient connects to the gateway at addr and starts sending.
func startWSClient(addr string) (*wsClient, error) {
	g, err := local.DialGateway(addr)
	if err != nil {
		return nil, err
	}
	c := &wsClient{g: g, quit: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

func (c *wsClient) run() {
	defer close(c.done)
	for n := 1; ; n++ {
		select {
		case <-c.quit:
			return
		case <-time.After(wsPause):
		}
		answer, err := c.g.Ask(fmt.Sprintf("message %d", n))
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.mu.Unlock()
			return
		}
		c.last = answer
		c.mu.Unlock()
	}
}

// describe is the client's column of the demo's table: the gateway's pid,
// its open connections as the agent reports them, and the greeting of the
// newest answer on this client's connection (its revision is in RUNNING).
func (c *wsClient) describe(connections string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return "pid " + c.g.PID + ": our connection lost: " + c.err.Error()
	}
	greeting, _, _ := strings.Cut(c.last, " (revision ")
	if greeting == "" {
		greeting = "-"
	}
	return fmt.Sprintf("pid %s, %s: %s", c.g.PID, connections, greeting)
}

// newestGreeting returns the greeting of the newest answer.
func (c *wsClient) newestGreeting() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	greeting, _, _ := strings.Cut(c.last, " (revision ")
	return greeting
}

// failed returns the error that ended the client, if any.
func (c *wsClient) failed() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// stop stops sending and closes the connection.
func (c *wsClient) stop() {
	c.once.Do(func() {
		close(c.quit)
		<-c.done
		_ = c.g.Close()
	})
}
