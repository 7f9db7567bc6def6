package local

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// GatewayClient is one WebSocket client of the example's gateway: it sends
// messages one after another on the one connection it opened, each
// answered before the next. A message lost or answered twice (the next
// answer is then not its own), or the connection dropped, ends it with an
// error.
type GatewayClient struct {
	g    *Gateway
	name string
	quit chan struct{}
	done chan struct{}
	stop sync.Once

	mu      sync.Mutex
	sent    int
	answers []GatewayAnswer
	err     error
}

// GatewayAnswer is one answer a GatewayClient got: when its message was
// sent, when the answer came, and the answer.
type GatewayAnswer struct {
	Sent, At time.Time
	Text     string
}

// StartGatewayClient connects to the gateway at addr (host:port) and
// starts sending, pausing pause between an answer and the next message;
// name labels its messages and errors.
func StartGatewayClient(addr, name string, pause time.Duration) (*GatewayClient, error) {
	g, err := DialGateway(addr)
	if err != nil {
		return nil, err
	}
	c := &GatewayClient{g: g, name: name, quit: make(chan struct{}), done: make(chan struct{})}
	go c.run(pause)
	return c, nil
}

func (c *GatewayClient) run(pause time.Duration) {
	defer close(c.done)
	for n := 0; ; n++ {
		select {
		case <-c.quit:
			return
		case <-time.After(pause):
		}
		asked := time.Now()
		c.mu.Lock()
		c.sent++
		c.mu.Unlock()
		answer, err := c.g.Ask(fmt.Sprintf("%s message %d", c.name, n))
		c.mu.Lock()
		if err != nil {
			c.err = fmt.Errorf("%s, message %d: %w", c.name, n, err)
			c.mu.Unlock()
			return
		}
		c.answers = append(c.answers, GatewayAnswer{Sent: asked, At: time.Now(), Text: answer})
		c.mu.Unlock()
	}
}

// PID returns the pid of the gateway worker that took the connection, as
// it said in its greeting.
func (c *GatewayClient) PID() string { return c.g.PID }

// Host returns the host name the gateway said in its greeting: in a pod,
// the pod's name.
func (c *GatewayClient) Host() string { return c.g.Host }

// String names it, as its messages and errors do.
func (c *GatewayClient) String() string { return c.name }

// Answered returns how many of its messages were answered so far.
func (c *GatewayClient) Answered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.answers)
}

// Last returns its newest answer; empty before the first.
func (c *GatewayClient) Last() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.answers) == 0 {
		return ""
	}
	return c.answers[len(c.answers)-1].Text
}

// FirstSince returns the first answer to a message sent at or after t;
// ok is false while there is none.
func (c *GatewayClient) FirstSince(t time.Time) (first GatewayAnswer, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := sort.Search(len(c.answers), func(i int) bool { return !c.answers[i].Sent.Before(t) })
	if i == len(c.answers) {
		return GatewayAnswer{}, false
	}
	return c.answers[i], true
}

// Err returns the error that ended it, if any.
func (c *GatewayClient) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Stop ends it once its message in flight is answered, closes the
// connection, and returns the messages sent, those answered, and the
// error that ended it. It can be called again, to the same result.
func (c *GatewayClient) Stop() (sent, answered int, err error) {
	c.stop.Do(func() {
		close(c.quit)
		<-c.done
		_ = c.g.Close()
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sent, len(c.answers), c.err
}

// GatewayLoad is many GatewayClients, perGateway on each gateway.
type GatewayLoad struct {
	Clients []*GatewayClient
}

// StartGatewayLoad connects perGateway clients to each gateway address
// (host:port) and starts them, each pausing pause between an answer and
// its next message.
func StartGatewayLoad(addrs []string, perGateway int, pause time.Duration) (*GatewayLoad, error) {
	l := &GatewayLoad{}
	for _, addr := range addrs {
		for i := range perGateway {
			c, err := StartGatewayClient(addr, fmt.Sprintf("%s client %d", addr, i), pause)
			if err != nil {
				_, _, _ = l.Stop() // the clients connected so far
				return nil, err
			}
			l.Clients = append(l.Clients, c)
		}
	}
	return l, nil
}

// Err returns the errors that ended clients so far, if any.
func (l *GatewayLoad) Err() error {
	var errs []error
	for _, c := range l.Clients {
		errs = append(errs, c.Err())
	}
	return errors.Join(errs...)
}

// Answered returns how many messages were answered so far, in all.
func (l *GatewayLoad) Answered() int {
	n := 0
	for _, c := range l.Clients {
		n += c.Answered()
	}
	return n
}

// Stop stops every client (GatewayClient.Stop), all at once, and returns
// the messages sent, those answered, and the errors that ended clients, in
// all.
func (l *GatewayLoad) Stop() (sent, answered int, err error) {
	var wg sync.WaitGroup
	for _, c := range l.Clients {
		wg.Go(func() { _, _, _ = c.Stop() })
	}
	wg.Wait()
	for _, c := range l.Clients {
		s, a, _ := c.Stop()
		sent += s
		answered += a
	}
	return sent, answered, l.Err()
}
