package worker_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/softreload/softreload/worker"
)

// A running worker.Server on its own copy of a shared socket, as the
// agent's workers are.
type running struct {
	stop   context.CancelFunc
	done   chan struct{} // closed when Run returned, with err
	err    error
	notify <-chan string
}

// wait waits until Run returned, and returns its error.
func (r *running) wait() error {
	Eventually(r.done, time.Minute).Should(BeClosed())
	return r.err
}

// serve runs a Server with handler on a copy of l and waits for READY=1.
func serve(l *net.TCPListener, handler http.Handler, grace time.Duration) *running {
	f, err := l.File() // a dup, as the agent's fd 3 is
	Expect(err).NotTo(HaveOccurred())
	mine, err := net.FileListener(f)
	f.Close()
	Expect(err).NotTo(HaveOccurred())
	r := &running{done: make(chan struct{}), notify: notifySocket()}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	s := &worker.Server{HTTP: &http.Server{Handler: handler}, Listeners: []net.Listener{mine}, IdleGrace: grace}
	go func() {
		defer close(r.done)
		r.err = s.Run(ctx)
	}()
	Eventually(r.notify).Should(Receive(Equal("READY=1")))
	DeferCleanup(func() {
		cancel()
		_ = r.wait()
	})
	return r
}

// drain starts the drain and waits until the worker says it stops.
func (r *running) drain() {
	r.stop()
	Eventually(r.notify).Should(Receive(Equal("STOPPING=1")))
}

// rawClient is an HTTP/1.1 client on one connection that does exactly
// what it is told: no retry, no new connection behind the caller's back.
type rawClient struct {
	c net.Conn
	r *bufio.Reader
}

func dial(addr net.Addr) *rawClient {
	c, err := net.Dial("tcp", addr.String())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(c.Close)
	return &rawClient{c: c, r: bufio.NewReader(c)}
}

func (c *rawClient) send(path string) error {
	_, err := fmt.Fprintf(c.c, "GET %s HTTP/1.1\r\nHost: worker\r\n\r\n", path)
	return err
}

// read reads one response: its body and whether it says Connection: close.
func (c *rawClient) read() (body string, closing bool, err error) {
	_ = c.c.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.Close, err
}

// get asks for / and reads the answer: whether it says Connection: close.
func (c *rawClient) get() (bool, error) {
	if err := c.send("/"); err != nil {
		return false, err
	}
	_, closing, err := c.read()
	return closing, err
}

// closed reports how the server ended the connection, once it does: nil
// for a clean close (EOF).
func (c *rawClient) closed() <-chan error {
	ch := make(chan error, 1)
	go func() {
		_ = c.c.SetReadDeadline(time.Now().Add(time.Minute))
		_, err := c.r.ReadByte()
		if errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			err = errors.New("the server sent a byte nobody asked for")
		}
		ch <- err
	}()
	return ch
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintf(w, "hello from %d\n", os.Getpid())
})

var _ = Describe("Server's drain", func() {
	var l *net.TCPListener
	BeforeEach(func() { l = listenTCP() })

	It("answers a request in flight with Connection: close, then closes its connection", func() {
		started, release := make(chan struct{}), make(chan struct{})
		w := serve(l, http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
			close(started)
			<-release
			fmt.Fprintln(rw, "slow answer")
		}), time.Minute)
		c := dial(l.Addr())
		Expect(c.send("/slow")).To(Succeed())
		Eventually(started).Should(BeClosed())
		w.drain()
		close(release)
		body, closing, err := c.read()
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(Equal("slow answer\n"))
		Expect(closing).To(BeTrue(), "the answer says Connection: close")
		Eventually(c.closed()).Should(Receive(BeNil()))
		Expect(w.wait()).To(Succeed())
	})

	It("answers the next request of a kept-alive connection with Connection: close", func() {
		w := serve(l, hello, time.Minute)
		c := dial(l.Addr())
		closing, err := c.get()
		Expect(err).NotTo(HaveOccurred())
		Expect(closing).To(BeFalse())
		w.drain()
		closing, err = c.get()
		Expect(err).NotTo(HaveOccurred())
		Expect(closing).To(BeTrue())
		Eventually(c.closed()).Should(Receive(BeNil()))
		Expect(w.wait()).To(Succeed())
	})

	It("closes a connection that stays idle through the grace, cleanly", func() {
		w := serve(l, hello, 50*time.Millisecond)
		// fresh first: the accept queue is FIFO, so kept's answer means the
		// worker accepted fresh too (else it would wait in the queue for
		// another worker, as it should).
		fresh, kept := dial(l.Addr()), dial(l.Addr())
		_, err := kept.get()
		Expect(err).NotTo(HaveOccurred())
		w.drain()
		Eventually(kept.closed()).Should(Receive(BeNil()))
		Eventually(fresh.closed()).Should(Receive(BeNil()), "a connection that never sent a request")
		Expect(w.wait()).To(Succeed())
	})

	It("never closes a connection whose request is half read", func() {
		w := serve(l, hello, 10*time.Millisecond)
		// fresh first: the accept queue is FIFO, so kept's answer means the
		// worker accepted fresh too (else it would wait in the queue for
		// another worker, as it should).
		fresh, kept := dial(l.Addr()), dial(l.Addr())
		_, err := kept.get()
		Expect(err).NotTo(HaveOccurred())
		for _, c := range []*rawClient{kept, fresh} {
			_, err = io.WriteString(c.c, "GET / HT")
			Expect(err).NotTo(HaveOccurred())
		}
		w.drain()
		keptClosed, freshClosed := kept.closed(), fresh.closed()
		Consistently(keptClosed, 300*time.Millisecond).ShouldNot(Receive(), "30 times the grace")
		Consistently(freshClosed).ShouldNot(Receive())
		for _, c := range []*rawClient{kept, fresh} {
			_, err = io.WriteString(c.c, "TP/1.1\r\nHost: worker\r\n\r\n")
			Expect(err).NotTo(HaveOccurred())
		}
		// The response is there to read now: the goroutine of closed() took
		// its first byte, so read it from the connection whole.
		for _, ch := range []<-chan error{keptClosed, freshClosed} {
			Eventually(ch).Should(Receive(MatchError("the server sent a byte nobody asked for")))
		}
		Expect(w.wait()).To(Succeed())
	})

	It("serves files through the connection (net/http's sendfile path)", func() {
		path := GinkgoT().TempDir() + "/big.txt"
		content := strings.Repeat("softreload\n", 10000)
		Expect(os.WriteFile(path, []byte(content), 0o644)).To(Succeed())
		serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) }), time.Minute)
		c := dial(l.Addr())
		Expect(c.send("/big.txt")).To(Succeed())
		body, _, err := c.read()
		Expect(err).NotTo(HaveOccurred())
		Expect(body).To(Equal(content))
	})

	It("gives up on a connection after DrainTimeout and says so", func() {
		block := make(chan struct{})
		DeferCleanup(func() { close(block) })
		started := make(chan struct{})
		f, err := l.File()
		Expect(err).NotTo(HaveOccurred())
		mine, err := net.FileListener(f)
		f.Close()
		Expect(err).NotTo(HaveOccurred())
		notify := notifySocket()
		s := &worker.Server{
			HTTP: &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				close(started)
				<-block
			})},
			Listeners:    []net.Listener{mine},
			DrainTimeout: 50 * time.Millisecond,
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		Eventually(notify).Should(Receive(Equal("READY=1")))
		c := dial(l.Addr())
		Expect(c.send("/")).To(Succeed())
		Eventually(started).Should(BeClosed())
		cancel()
		Eventually(done).Should(Receive(MatchError("1 connection(s) still open after the drain timeout (50ms)")))
	})

	It("loses no request of keep-alive and new-connection clients while one worker drains and another serves", func() {
		old := serve(l, hello, 5*time.Second)
		serve(l, hello, 5*time.Second) // the worker that stays
		var served, failed atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var clients sync.WaitGroup
		fail := func(err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		for i := range 10 {
			keepAlive := i < 8
			clients.Add(1)
			go func() {
				defer GinkgoRecover()
				defer clients.Done()
				var c *rawClient
				for {
					select {
					case <-stop:
						if c != nil {
							c.c.Close() // or the worker that stays waits out its grace for it
						}
						return
					default:
					}
					if c == nil {
						conn, err := net.Dial("tcp", l.Addr().String())
						if err != nil {
							fail(err)
							continue
						}
						c = &rawClient{c: conn, r: bufio.NewReader(conn)}
					}
					closing, err := c.get()
					if err != nil {
						fail(err)
					} else {
						served.Add(1)
					}
					if err != nil || closing || !keepAlive {
						c.c.Close()
						c = nil
					}
				}
			}()
		}
		Eventually(served.Load).Should(BeNumerically(">", 500))
		old.stop()
		Expect(old.wait()).To(Succeed())
		after := served.Load()
		Eventually(served.Load).Should(BeNumerically(">", after+500))
		close(stop)
		clients.Wait()
		Expect(failed.Load()).To(BeZero(), "e.g. %v", firstErr.Load())
	})
})
