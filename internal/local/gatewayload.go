package local

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// GatewayLoad is WebSocket clients of the example's gateways: each sends
// messages one after another on its own connection, each answered before
// the next. A message lost or answered twice (the next answer is then not
// its own), or a connection dropped, ends that client with an error.
type GatewayLoad struct {
	clients []*gatewayClient
	stop    sync.Once
}

type gatewayClient struct {
	g    *Gateway
	name string
	quit chan struct{}
	done chan struct{}

	mu       sync.Mutex
	sent     int
	answered int
	last     string
	answers  []GatewayAnswer
	err      error
}

// GatewayAnswer is one answer a client of a GatewayLoad got: when its
// message was sent, when the answer came, and the answer.
type GatewayAnswer struct {
	Sent, At time.Time
	Text     string
}

// StartGatewayLoad connects perGateway clients to each gateway address
// (host:port) and starts them, each pausing pause between an answer and
// its next message.
func StartGatewayLoad(addrs []string, perGateway int, pause time.Duration) (*GatewayLoad, error) {
	l := &GatewayLoad{}
	for _, addr := range addrs {
		for i := range perGateway {
			g, err := DialGateway(addr)
			if err != nil {
				_, _, _ = l.Stop() // the clients connected so far
				return nil, err
			}
			c := &gatewayClient{g: g, name: fmt.Sprintf("%s client %d", addr, i), quit: make(chan struct{}), done: make(chan struct{})}
			l.clients = append(l.clients, c)
			go c.run(pause)
		}
	}
	return l, nil
}

func (c *gatewayClient) run(pause time.Duration) {
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
		c.answered++
		c.last = answer
		c.answers = append(c.answers, GatewayAnswer{Sent: asked, At: time.Now(), Text: answer})
		c.mu.Unlock()
	}
}

// FirstSince returns the first answer each client got to a message sent at
// or after t, in the clients' order; ok is false while one of them has
// none yet.
func (l *GatewayLoad) FirstSince(t time.Time) (first []GatewayAnswer, ok bool) {
	for _, c := range l.clients {
		c.mu.Lock()
		i := sort.Search(len(c.answers), func(i int) bool { return !c.answers[i].Sent.Before(t) })
		if i < len(c.answers) {
			first = append(first, c.answers[i])
		}
		c.mu.Unlock()
	}
	return first, len(first) == len(l.clients)
}

// Err returns the errors that ended clients so far, if any.
func (l *GatewayLoad) Err() error {
	var errs []error
	for _, c := range l.clients {
		c.mu.Lock()
		errs = append(errs, c.err)
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Answered returns how many messages were answered so far, in all.
func (l *GatewayLoad) Answered() int {
	n := 0
	for _, c := range l.clients {
		c.mu.Lock()
		n += c.answered
		c.mu.Unlock()
	}
	return n
}

// LastRevisions returns, for each client, the revision of its last answer
// (AnswerRevision; empty before its first answer): what code answers on
// its connection now.
func (l *GatewayLoad) LastRevisions() []string {
	revs := make([]string, 0, len(l.clients))
	for _, c := range l.clients {
		c.mu.Lock()
		revs = append(revs, AnswerRevision(c.last))
		c.mu.Unlock()
	}
	return revs
}

// Stop ends every client once its message in flight is answered, closes
// the connections, and returns the messages sent, those answered, and the
// errors that ended clients.
func (l *GatewayLoad) Stop() (sent, answered int, err error) {
	l.stop.Do(func() {
		for _, c := range l.clients {
			close(c.quit)
		}
		for _, c := range l.clients {
			<-c.done
			_ = c.g.Close()
		}
	})
	for _, c := range l.clients {
		c.mu.Lock()
		sent += c.sent
		answered += c.answered
		c.mu.Unlock()
	}
	return sent, answered, l.Err()
}
