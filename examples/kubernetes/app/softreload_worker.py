"""The worker side of softreload's contract, for Python workers.

softreload's agent runs each worker with the listening sockets already
bound (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, from fd 3), a NOTIFY_SOCKET
for READY=1, and the worker's identity (SOFTRELOAD_GROUP,
SOFTRELOAD_WORKER_ID, SOFTRELOAD_REVISION, SOFTRELOAD_CODE_DIR). On its stop
signal a worker must stop accepting, answer the requests in flight with
``Connection: close``, close each kept-alive connection only when no request
is on it, and exit. This module does all of that with the standard library.

An http.server worker is one call::

    from http.server import BaseHTTPRequestHandler
    import softreload_worker

    class Hello(softreload_worker.RequestHandler):
        def do_GET(self):
            self.send_text(200, "hello\\n")

    softreload_worker.serve_http(Hello)

A server of your own takes the socket and two callables::

    sock = softreload_worker.listen_socket()
    softreload_worker.run(lambda: my_server.serve(sock), my_server.drain)
"""

import collections
import io
import os
import select
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = [
    "Identity",
    "NoSocketsError",
    "RequestHandler",
    "HTTPServer",
    "identity",
    "listen_sockets",
    "listen_socket",
    "notify",
    "ready",
    "run",
    "serve_http",
    "STOP_SIGNALS",
]

__version__ = "0.1.0"

# The first inherited descriptor (SD_LISTEN_FDS_START).
FIRST_FD = 3

# The signals that start a drain: the group's stopSignal is one of them
# unless the pool says otherwise.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

# How long, during a drain, an idle kept-alive connection may wait for its
# next request (counted from its last response) before it is closed.
DEFAULT_IDLE_GRACE = 0.5

Identity = collections.namedtuple("Identity", "group worker_id revision code_dir")
Identity.__doc__ = "Which worker this process is; worker_id is -1 outside the agent."


class NoSocketsError(RuntimeError):
    """The process was given no sockets: it does not run under the agent."""


def identity(environ=None):
    """The worker's identity, from its environment."""
    env = os.environ if environ is None else environ
    raw = env.get("SOFTRELOAD_WORKER_ID", "")
    worker_id = -1
    if raw != "":
        if not raw.isdigit():
            raise ValueError(f"SOFTRELOAD_WORKER_ID={raw!r} is not a worker slot (0, 1, ...)")
        worker_id = int(raw)
    return Identity(
        group=env.get("SOFTRELOAD_GROUP", ""),
        worker_id=worker_id,
        revision=env.get("SOFTRELOAD_REVISION", ""),
        code_dir=env.get("SOFTRELOAD_CODE_DIR", ""),
    )


def listen_sockets(environ=None):
    """The sockets the agent passed, as a list of (name, socket), fd 3 first.

    Names come from LISTEN_FDNAMES (the agent says GROUP-INDEX, e.g. web-0).
    Raises NoSocketsError when there are none. Call it once: the sockets own
    the descriptors.
    """
    env = os.environ if environ is None else environ
    fds, pid = env.get("LISTEN_FDS", ""), env.get("LISTEN_PID", "")
    if fds == "" or pid != str(os.getpid()):
        raise NoSocketsError(
            "no sockets passed: LISTEN_FDS is unset or LISTEN_PID is not this process "
            "(run under softreload's agent)")
    if not fds.isdigit():
        raise ValueError(f"LISTEN_FDS={fds!r} is not a number of sockets")
    names = env.get("LISTEN_FDNAMES", "").split(":")
    out = []
    for i in range(int(fds)):
        fd = FIRST_FD + i
        name = names[i] if i < len(names) and names[i] else f"fd{fd}"
        out.append((name, socket.socket(fileno=fd)))
    if not out:
        raise NoSocketsError("no sockets passed: LISTEN_FDS=0")
    return out


def listen_socket(name=None, environ=None):
    """One inherited socket: the one called name, or the first; the others are closed."""
    found, names = None, []
    for n, s in listen_sockets(environ):
        if found is None and (name is None or n == name):
            found = s
            continue
        names.append(n)
        s.close()
    if found is None:
        raise NoSocketsError(f"no inherited socket named {name!r} (LISTEN_FDNAMES has {', '.join(names)})")
    return found


def notify(state, environ=None):
    """Send state (e.g. "READY=1") to the agent over NOTIFY_SOCKET, as sd_notify(3)."""
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), path)


def ready():
    """Tell the agent the worker serves: READY=1."""
    notify("READY=1")


def run(serve, stop, *, send_ready=True, signals=STOP_SIGNALS):
    """Run a server of your own under the contract.

    serve() runs the server on the inherited socket and returns once it has
    drained; stop() is called, in a thread of its own, on the first stop
    signal and must make serve() drain and return; STOPPING=1 follows
    once stop() returned. READY=1 is sent just
    before serve() unless send_ready is false (then call ready() once the
    server is warm).
    """
    once = threading.Lock()

    def stopping():
        stop()
        notify("STOPPING=1")

    def on_signal(signum, frame):
        if once.acquire(blocking=False):
            threading.Thread(target=stopping, name="softreload-stop").start()

    for sig in signals:
        signal.signal(sig, on_signal)
    if send_ready:
        ready()
    serve()


class HTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer on an inherited socket that drains on stop().

    serve() accepts until stop(); then the listening socket is closed (this
    worker's copy: the agent's keeps the queue for the other workers), every
    response not yet begun says "Connection: close", each connection is
    closed once it waits for a request for longer than idle_grace with
    nothing sent on it, and serve() returns when every connection ended.
    """

    daemon_threads = False
    block_on_close = True

    def __init__(self, handler_class, sock, idle_grace=DEFAULT_IDLE_GRACE):
        super().__init__(("", 0), handler_class, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.address_family = sock.family
        # Every worker of the group waits on this socket: when another one
        # took the connection, accept must fail at once (EAGAIN), not block
        # until the next connection while the stop signal waits.
        sock.setblocking(False)
        name = sock.getsockname()
        self.server_name, self.server_port = (name[0], name[1]) if isinstance(name, tuple) else (str(name), 0)
        self.idle_grace = idle_grace
        self.draining = False
        self._wake_r, self._wake_w = os.pipe()

    def serve(self):
        """Accept and serve until stop(), then drain and return."""
        poller = select.poll()
        poller.register(self.socket, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self.draining:
                for fd, _ in poller.poll():
                    if fd == self._wake_r:
                        break
                    self._handle_request_noblock()
        finally:
            self.draining = True
            self.server_close()  # closes our socket, joins the connection threads
            os.close(self._wake_r)
            os.close(self._wake_w)

    def stop(self):
        """Start the drain; safe from a signal handler or any thread."""
        self.draining = True
        try:
            # Never read: the pipe stays readable, which wakes every waiter.
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # already closed: serve() returned

    def handle_error(self, request, client_address):
        pass  # a client that went away is not the worker's error


class RequestHandler(BaseHTTPRequestHandler):
    """A BaseHTTPRequestHandler for HTTPServer: keep-alive, drain, no stall.

    - HTTP/1.1 with keep-alive;
    - a response is written in one piece (headers and body are buffered and
      sent at the end of the request) on a TCP_NODELAY socket: without it a
      kept-alive client waits ~40 ms per request (Nagle's algorithm and the
      client's delayed ACK);
    - it waits for the next request without holding a drain: an idle
      connection is closed when the drain's grace ends, at a moment when no
      byte of a request is on it; a request that began is answered, with
      "Connection: close" during a drain.

    A handler that streams calls self.wfile.flush() to send what it wrote.
    """

    protocol_version = "HTTP/1.1"
    wbufsize = io.DEFAULT_BUFFER_SIZE
    # A kept-alive connection idle this long (seconds) is closed.
    idle_timeout = 60.0

    def setup(self):
        super().setup()
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self):
        self.close_connection = False
        while not self.close_connection:
            if not self._wait_for_request():
                return
            self.handle_one_request()

    def end_headers(self):
        if getattr(self.server, "draining", False) and not self.close_connection:
            self.send_header("Connection", "close")
        super().end_headers()

    def send_text(self, code, text, content_type="text/plain; charset=utf-8"):
        """Answer with a whole body, Content-Length set."""
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # one line per request is the application's choice, not the library's

    def _wait_for_request(self):
        """Wait until a request begins (True) or the connection is to close (False)."""
        since = time.monotonic()
        sock = self.connection
        wake = getattr(self.server, "_wake_r", None)
        while True:
            if self._bytes_waiting():
                return True
            draining = getattr(self.server, "draining", False)
            limit = since + (self.server.idle_grace if draining else self.idle_timeout)
            left = limit - time.monotonic()
            if left <= 0:
                # Nothing was sent on it: closing now answers no request
                # badly. (A request sent this very instant may still cross
                # the close; HTTP clients retry those when idempotent.)
                return self._bytes_waiting()
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            if wake is not None and not draining:
                poller.register(wake, select.POLLIN)
            for fd, _ in poller.poll(left * 1000):
                if fd == sock.fileno():
                    return True  # a request, or the end: handle_one_request sees which

    def _bytes_waiting(self):
        """Whether a byte of a request (or the client's end) is buffered or in the kernel."""
        sock = self.connection
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            # A buffered (pipelined) request, or one waiting in the kernel:
            # peek reads it into the buffer without blocking.
            if self.rfile.peek(1):
                return True
            return False
        except OSError:
            return True  # let handle_one_request find out
        finally:
            sock.settimeout(timeout)


def serve_http(handler_class, name=None, idle_grace=DEFAULT_IDLE_GRACE, signals=STOP_SIGNALS):
    """Serve handler_class on the inherited socket (the one called name, or
    the first) under the whole contract, until the stop signal has drained
    it."""
    server = HTTPServer(handler_class, listen_socket(name), idle_grace=idle_grace)
    run(server.serve, server.stop, signals=signals)
