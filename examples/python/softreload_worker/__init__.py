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

The gateway pattern (docs/gateway.md): a gateway group that is never
reloaded holds the clients' connections and hands each message to a
reloadable business group on a local socket; a reload replaces the business
code and no client connection drops::

    # business worker: one message in, one answer out, drained as above
    softreload_worker.serve_messages(lambda message: b"answer to " + message)

    # gateway: a fresh connection per message, retried while unanswered
    answer = softreload_worker.forward("unix:///tmp/app-business.sock", message)
    answer = await softreload_worker.forward_async("unix:///tmp/app-business.sock", message)
"""

import asyncio
import collections
import io
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = [
    "BusinessError",
    "Identity",
    "MessageServer",
    "NoSocketsError",
    "NotAnswered",
    "Unavailable",
    "forward",
    "forward_async",
    "resolve_address",
    "serve_all",
    "serve_messages",
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
    # The signal handler only writes a byte to a pipe. It runs in the main
    # thread between two of its bytecodes, possibly while the main thread
    # holds one of threading's own locks (a request's thread being started
    # or reaped): starting a thread there, or taking a lock, can wait for
    # that lock forever, and the worker then never drains nor exits.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    serving = True

    def stopping():
        if os.read(wake_r, 1):
            stop()
            notify("STOPPING=1")

    def on_signal(signum, frame):
        if serving:
            try:
                os.write(wake_w, b"x")
            except BlockingIOError:
                pass  # the pipe is full of earlier signals: the stop is under way

    stopper = threading.Thread(target=stopping, name="softreload-stop", daemon=True)
    stopper.start()
    for sig in signals:
        signal.signal(sig, on_signal)
    if send_ready:
        ready()
    try:
        serve()
    finally:
        # Handlers run in this thread, so none writes once serving is
        # false. Closing the pipe's end lets the stopper finish: it either
        # read a stop signal's byte (and STOPPING=1 is sent before the
        # worker exits) or reads the end and does nothing.
        serving = False
        os.close(wake_w)
        stopper.join()
        os.close(wake_r)


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


def serve_all(*servers, signals=STOP_SIGNALS):
    """Run several servers in one worker under the contract: each one's
    serve() in a thread of its own, READY=1 once all are started, and the
    stop signal calls every stop(); returns once all have drained.

    A worker with two sockets (HTTP on one, the gateway's messages on the
    other) is::

        socks = dict(softreload_worker.listen_sockets())
        softreload_worker.serve_all(HTTPServer(Handler, socks["web-0"]),
                                    MessageServer(answer, socks["web-1"]))
    """
    def serve():
        threads = [threading.Thread(target=s.serve, name=f"softreload-serve-{i}") for i, s in enumerate(servers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def stop():
        for s in servers:
            s.stop()

    run(serve, stop, signals=signals)


# The gateway pattern: a gateway (reloadable: false) forwards each message of
# its clients to a business group on an address the agent owns, one message
# per connection:
#
#   gateway -> business: a frame (4-byte big-endian length, then the message)
#   business -> gateway: a frame whose first byte is ANSWER_OK and the rest
#                        the answer, or ANSWER_ERROR and the error's text;
#                        then the business closes the connection.
#
# A business worker answers every connection it accepted, also while it
# drains, so a reload loses no message; a connection that ends before any
# byte of an answer (a worker killed, crashed, or never started) is sent
# again on a fresh connection, which a live worker accepts.

# The most bytes a message or an answer may have.
MAX_MESSAGE = 16 << 20
ANSWER_OK, ANSWER_ERROR = 0, 1
# How long the gateway waits for an answer once the message is sent.
DEFAULT_ANSWER_TIMEOUT = 30.0
# How long the gateway sends a message again while no worker answers it.
DEFAULT_RETRY_FOR = 30.0
# How long a business worker waits for the message of a connection it took.
DEFAULT_READ_TIMEOUT = 30.0


class Unavailable(ConnectionError):
    """No business worker took the message within retry_for: it was not handled."""


class NotAnswered(ConnectionError):
    """The message was sent but no whole answer came (a timeout, or an answer
    cut short): it may or may not have been handled, so it is not sent again."""


class BusinessError(RuntimeError):
    """The business handler raised; the text is its error."""


class _Again(Exception):
    """The exchange ended before any byte of an answer: send it again."""


def resolve_address(address, environ=None):
    """The (family, sockaddr) of a listen address of the pool, "unix:///path"
    or "tcp://host:port", as the agent bound it.

    Only the agent of softreload's local mode (make demo, the end-to-end
    tests), where several pods share one machine, moves addresses: it puts
    unix paths under SOFTRELOAD_SOCKET_ROOT and tcp ports on
    SOFTRELOAD_LISTEN_HOST at SOFTRELOAD_PORT_OFFSET, and its workers inherit
    those variables. The production agent sets none of them.
    """
    env = os.environ if environ is None else environ
    scheme, sep, rest = str(address).partition("://")
    if not sep:
        raise ValueError(f"address {address!r}: want unix:///absolute/path or tcp://host:port")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"address {address!r}: a unix socket's path must be absolute")
        root = env.get("SOFTRELOAD_SOCKET_ROOT", "")
        return socket.AF_UNIX, (root.rstrip("/") + rest) if root else rest
    if scheme != "tcp":
        raise ValueError(f"address {address!r}: unknown scheme {scheme!r} (want unix or tcp)")
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit():
        raise ValueError(f"address {address!r}: want tcp://host:port")
    host = host.strip("[]")
    offset = env.get("SOFTRELOAD_PORT_OFFSET", "")
    port = int(port) + (int(offset) if offset.isdigit() and int(port) != 0 else 0)
    host = env.get("SOFTRELOAD_LISTEN_HOST") or host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, (host, port)


def _encode(message):
    data = message.encode() if isinstance(message, str) else bytes(message)
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"message of {len(data)} bytes, more than {MAX_MESSAGE}")
    return struct.pack(">I", len(data)) + data


def _answer(frame):
    """The answer in a business frame, or BusinessError."""
    if not frame:
        raise NotAnswered("the business answered an empty frame")
    if frame[0] == ANSWER_ERROR:
        raise BusinessError(frame[1:].decode(errors="replace"))
    return frame[1:]


# Errors of a connection that mean nothing was handled yet: no worker took
# it, or it ended before any byte of an answer.
_NOT_TAKEN = (ConnectionRefusedError, FileNotFoundError, ConnectionResetError, BrokenPipeError,
              ConnectionAbortedError)


def forward(address, message, *, timeout=DEFAULT_ANSWER_TIMEOUT, retry_for=DEFAULT_RETRY_FOR, environ=None):
    """Send message (bytes or str) to the business at address on a fresh
    connection and return its answer (bytes).

    A connection that no worker takes (refused, no socket yet) or that ends
    before any byte of an answer (its worker was killed or crashed) is tried
    again on a new one, with backoff, for up to retry_for seconds; then
    Unavailable. An answer that does not come within timeout, or is cut
    short, is NotAnswered (the message may have been handled: it is not sent
    again). A handler that raised is BusinessError.
    """
    family, addr = resolve_address(address, environ)
    frame = _encode(message)
    deadline = time.monotonic() + retry_for
    delay = 0.01
    while True:
        try:
            return _answer(_exchange(family, addr, frame, timeout))
        except _Again as e:
            if time.monotonic() + delay > deadline:
                raise Unavailable(f"no worker at {address} answered within {retry_for}s: {e.__cause__}") from e.__cause__
            time.sleep(delay)
            delay = min(2 * delay, 0.5)


def _exchange(family, addr, frame, timeout):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(addr)
            s.sendall(frame)
            head = s.recv(4)
        except _NOT_TAKEN as e:
            raise _Again() from e
        except socket.timeout as e:
            raise NotAnswered(f"no answer within {timeout}s") from e
        if not head:
            raise _Again() from ConnectionResetError("closed before answering")
        try:
            while len(head) < 4:
                more = s.recv(4 - len(head))
                if not more:
                    raise NotAnswered("answer cut short")
                head += more
            (n,) = struct.unpack(">I", head)
            if n > MAX_MESSAGE + 1:
                raise NotAnswered(f"answer of {n} bytes, more than {MAX_MESSAGE + 1}")
            body = bytearray()
            while len(body) < n:
                more = s.recv(min(n - len(body), 1 << 16))
                if not more:
                    raise NotAnswered("answer cut short")
                body += more
            return bytes(body)
        except (socket.timeout, OSError) as e:
            if isinstance(e, NotAnswered):
                raise
            raise NotAnswered(f"reading the answer: {e}") from e


async def forward_async(address, message, *, timeout=DEFAULT_ANSWER_TIMEOUT, retry_for=DEFAULT_RETRY_FOR, environ=None):
    """forward() for asyncio: the same exchange, retries and errors."""
    family, addr = resolve_address(address, environ)
    frame = _encode(message)
    deadline = time.monotonic() + retry_for
    delay = 0.01
    while True:
        try:
            return _answer(await _exchange_async(family, addr, frame, timeout))
        except _Again as e:
            if time.monotonic() + delay > deadline:
                raise Unavailable(f"no worker at {address} answered within {retry_for}s: {e.__cause__}") from e.__cause__
            await asyncio.sleep(delay)
            delay = min(2 * delay, 0.5)


async def _exchange_async(family, addr, frame, timeout):
    writer = None
    try:
        try:
            if family == socket.AF_UNIX:
                reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(addr), timeout)
            else:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1]), timeout)
            writer.write(frame)
            await writer.drain()
            head = await asyncio.wait_for(reader.read(4), timeout)
        except _NOT_TAKEN as e:
            raise _Again() from e
        except asyncio.TimeoutError as e:
            raise NotAnswered(f"no answer within {timeout}s") from e
        if not head:
            raise _Again() from ConnectionResetError("closed before answering")
        try:
            head += await asyncio.wait_for(reader.readexactly(4 - len(head)), timeout)
            (n,) = struct.unpack(">I", head)
            if n > MAX_MESSAGE + 1:
                raise NotAnswered(f"answer of {n} bytes, more than {MAX_MESSAGE + 1}")
            return await asyncio.wait_for(reader.readexactly(n), timeout)
        except asyncio.IncompleteReadError as e:
            raise NotAnswered("answer cut short") from e
        except (asyncio.TimeoutError, OSError) as e:
            raise NotAnswered(f"reading the answer: {e!r}") from e
    finally:
        if writer is not None:
            writer.close()


class MessageServer:
    """A business worker's server on an inherited socket: for each
    connection, one message in (a frame), handler(message) -> answer
    (bytes or str), one answer out, then the connection closes.

    stop() starts the drain: the worker stops accepting (it closes its own
    copy of the socket; the agent's keeps the queue for the other workers),
    answers every connection it already took, and serve() returns once all
    are answered. A connection is never closed without its answer, unless
    its message does not come within read_timeout. A handler that raises is
    answered with its error (the gateway raises BusinessError), never sent
    again.
    """

    def __init__(self, handler, sock, read_timeout=DEFAULT_READ_TIMEOUT):
        self.handler = handler
        self.socket = sock
        # Every worker of the group waits on this socket (the worker
        # contract): accept must fail at once when another one took it.
        sock.setblocking(False)
        self.read_timeout = read_timeout
        self.draining = False
        self._threads = set()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()

    def serve(self):
        """Accept and answer until stop(), then drain and return."""
        poller = select.poll()
        poller.register(self.socket, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self.draining:
                for fd, _ in poller.poll():
                    if fd == self._wake_r or self.draining:
                        break
                    self._accept()
        finally:
            self.draining = True
            self.socket.close()
            with self._lock:
                threads = list(self._threads)
            for t in threads:
                t.join()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def stop(self):
        """Start the drain; safe from a signal handler or any thread."""
        self.draining = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # already closed: serve() returned

    def _accept(self):
        try:
            conn, _ = self.socket.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        t = threading.Thread(target=self._serve_one, args=(conn,), daemon=True)
        with self._lock:
            self._threads.add(t)
        t.start()

    def _serve_one(self, conn):
        try:
            with conn:
                conn.setblocking(True)
                conn.settimeout(self.read_timeout)
                message = _read_frame(conn)
                if message is None:
                    return  # the gateway went away before sending
                try:
                    answer = self.handler(message)
                    out = bytes([ANSWER_OK]) + (answer.encode() if isinstance(answer, str) else bytes(answer))
                except Exception as e:  # the handler's error goes to the gateway
                    traceback.print_exc(file=sys.stderr)
                    out = bytes([ANSWER_ERROR]) + f"{type(e).__name__}: {e}".encode()
                conn.sendall(struct.pack(">I", len(out)) + out)
        except OSError:
            pass  # the gateway went away; it sends the message again if no answer reached it
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())


def _read_frame(conn):
    """One frame's payload from conn; None if it ends first."""
    def exactly(n):
        buf = bytearray()
        while len(buf) < n:
            more = conn.recv(min(n - len(buf), 1 << 16))
            if not more:
                return None
            buf += more
        return bytes(buf)

    head = exactly(4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if n > MAX_MESSAGE:
        raise OSError(f"message of {n} bytes, more than {MAX_MESSAGE}")
    return exactly(n)


def serve_messages(handler, name=None, read_timeout=DEFAULT_READ_TIMEOUT, signals=STOP_SIGNALS):
    """Serve handler (message bytes -> answer bytes or str) on the inherited
    socket (the one called name, or the first) under the whole contract,
    until the stop signal has drained it: the business side of the gateway
    pattern."""
    server = MessageServer(handler, listen_socket(name), read_timeout=read_timeout)
    run(server.serve, server.stop, signals=signals)
