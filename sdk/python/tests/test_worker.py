"""Tests of softreload_worker on real sockets and real processes."""
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from http.client import HTTPResponse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import softreload_worker as srw  # noqa: E402

# Every wait in these tests is for something that happens; the bound only
# keeps a broken test from hanging.
WAIT = 60


class Hello(srw.RequestHandler):
    started = None  # threading.Event: set when a /slow request is in the handler
    release = None  # threading.Event: a /slow request answers once set

    def do_GET(self):
        if self.path == "/slow":
            self.started.set()
            self.release.wait(WAIT)
        if self.path == "/nodelay":
            nodelay = self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            buffered = isinstance(self.wfile, io.BufferedWriter)  # headers and body leave in one write
            self.send_text(200, f"nodelay={int(bool(nodelay))} buffered={int(buffered)}\n")
            return
        self.send_text(200, f"hello from {id(self.server)}\n")


class Client:
    """An HTTP/1.1 client on one connection that does exactly what it is told."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=WAIT)

    def send(self, path="/"):
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: worker\r\n\r\n".encode())

    def read(self):
        """One response: (body, closing)."""
        resp = HTTPResponse(self.sock)
        resp.begin()
        body = resp.read().decode()
        return body, resp.will_close

    def get(self, path="/"):
        self.send(path)
        return self.read()

    def closed_cleanly(self):
        """Wait for the server's end: True for a clean close (EOF)."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return False

    def close(self):
        self.sock.close()


class Worker:
    """An HTTPServer on its own copy of a shared socket, as the agent's workers are."""

    def __init__(self, listener, grace=60.0, handler=Hello):
        self.server = srw.HTTPServer(handler, socket.socket(fileno=os.dup(listener.fileno())), idle_grace=grace)
        self.thread = threading.Thread(target=self.server.serve)
        self.thread.start()

    def drain(self):
        self.server.stop()

    def wait(self):
        self.thread.join(WAIT)
        return not self.thread.is_alive()


class DrainTest(unittest.TestCase):
    def setUp(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = self.listener.getsockname()
        self.workers, self.clients = [], []
        Hello.started, Hello.release = threading.Event(), threading.Event()

    def tearDown(self):
        Hello.release.set()
        for c in self.clients:
            c.close()
        for w in self.workers:
            w.drain()
            w.wait()
        self.listener.close()

    def worker(self, **kw):
        w = Worker(self.listener, **kw)
        self.workers.append(w)
        return w

    def client(self):
        c = Client(self.addr)
        self.clients.append(c)
        return c

    def test_request_in_flight_answered_with_connection_close(self):
        w = self.worker()
        c = self.client()
        c.send("/slow")
        self.assertTrue(Hello.started.wait(WAIT))
        w.drain()
        Hello.release.set()
        body, closing = c.read()
        self.assertTrue(body.startswith("hello"))
        self.assertTrue(closing, "the answer says Connection: close")
        self.assertTrue(c.closed_cleanly())
        self.assertTrue(w.wait())

    def test_next_request_of_kept_alive_connection_answered_with_close(self):
        w = self.worker()
        c = self.client()
        _, closing = c.get()
        self.assertFalse(closing)
        w.drain()
        _, closing = c.get()
        self.assertTrue(closing)
        self.assertTrue(c.closed_cleanly())
        self.assertTrue(w.wait())

    def test_idle_connection_closed_cleanly_after_grace(self):
        w = self.worker(grace=0.05)
        # fresh first: the accept queue is FIFO, so kept's answer means the
        # worker accepted fresh too (else it would wait in the queue for
        # another worker, as it should).
        fresh, kept = self.client(), self.client()
        kept.get()
        w.drain()
        self.assertTrue(kept.closed_cleanly())
        self.assertTrue(fresh.closed_cleanly(), "a connection that never sent a request")
        self.assertTrue(w.wait())

    def test_half_read_request_never_closed(self):
        w = self.worker(grace=0.01)
        # fresh first: the accept queue is FIFO, so kept's answer means the
        # worker accepted fresh too (else it would wait in the queue for
        # another worker, as it should).
        fresh, kept = self.client(), self.client()
        kept.get()
        for c in (kept, fresh):
            c.sock.sendall(b"GET / HT")
        w.drain()
        for c in (kept, fresh):
            c.sock.settimeout(0.3)  # thirty times the grace: it must stay open
            with self.assertRaises(socket.timeout):
                c.sock.recv(1)
            c.sock.settimeout(WAIT)
            c.sock.sendall(b"TP/1.1\r\nHost: worker\r\n\r\n")
            body, closing = c.read()
            self.assertTrue(body.startswith("hello"))
            self.assertTrue(closing)
        self.assertTrue(w.wait())

    def test_response_is_one_write_on_a_nodelay_socket(self):
        self.worker()
        body, _ = self.client().get("/nodelay")
        self.assertEqual(body, "nodelay=1 buffered=1\n")

    def test_no_request_lost_while_one_worker_drains_and_another_serves(self):
        old = self.worker(grace=5.0)
        self.worker(grace=5.0)
        served, failures = [0], []
        stop = threading.Event()
        lock = threading.Lock()

        def client(keep_alive):
            c = None
            while not stop.is_set():
                try:
                    if c is None:
                        c = Client(self.addr)
                    _, closing = c.get()
                    with lock:
                        served[0] += 1
                except OSError as e:
                    with lock:
                        failures.append(repr(e))
                    closing = True
                if closing or not keep_alive:
                    c.close()
                    c = None
            if c is not None:
                c.close()

        threads = [threading.Thread(target=client, args=(i < 6,)) for i in range(8)]
        for t in threads:
            t.start()

        def wait_served(n):
            deadline = time.monotonic() + WAIT
            while served[0] < n and time.monotonic() < deadline:
                time.sleep(0.01)
            return served[0] >= n

        try:
            self.assertTrue(wait_served(300))
            old.drain()
            self.assertTrue(old.wait())
            self.assertTrue(wait_served(served[0] + 300))
        finally:
            stop.set()
            for t in threads:
                t.join(WAIT)
        self.assertEqual(failures, [])


class ContractTest(unittest.TestCase):
    """The functions that read the agent's environment."""

    def test_identity(self):
        env = {"SOFTRELOAD_GROUP": "web", "SOFTRELOAD_WORKER_ID": "2",
               "SOFTRELOAD_REVISION": "ae7fd0d0c7b0", "SOFTRELOAD_CODE_DIR": "/state/ae7fd0d0c7b0"}
        self.assertEqual(srw.identity(env), srw.Identity("web", 2, "ae7fd0d0c7b0", "/state/ae7fd0d0c7b0"))
        self.assertEqual(srw.identity({}).worker_id, -1)
        with self.assertRaisesRegex(ValueError, r"SOFTRELOAD_WORKER_ID='x' is not a worker slot"):
            srw.identity({"SOFTRELOAD_WORKER_ID": "x"})

    def test_no_sockets(self):
        with self.assertRaisesRegex(srw.NoSocketsError, "LISTEN_PID is not this process"):
            srw.listen_sockets({"LISTEN_FDS": "1", "LISTEN_PID": "1"})
        with self.assertRaisesRegex(ValueError, "LISTEN_FDS='two' is not a number"):
            srw.listen_sockets({"LISTEN_FDS": "two", "LISTEN_PID": str(os.getpid())})

    def test_notify(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "notify.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.bind(path)
                s.settimeout(WAIT)
                srw.notify("READY=1", {"NOTIFY_SOCKET": path})
                self.assertEqual(s.recv(64), b"READY=1")
        srw.notify("READY=1", {})  # no NOTIFY_SOCKET: nothing to do


# A worker process as the agent starts one: LISTEN_PID is set to the pid
# after fork, by a shim that then execs the worker (exec keeps the pid).
# The test's sockets arrive at other numbers; the shim puts them at 3, 4.
SHIM = """
import os, sys
for i, fd in enumerate(os.environ.pop("TEST_FDS").split(",")):
    os.dup2(int(fd), 3 + i)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable] + sys.argv[1:])
"""
WORKER = f"""
import sys; sys.path.insert(0, {os.path.dirname(HERE)!r})
import softreload_worker as srw
class H(srw.RequestHandler):
    def do_GET(self):
        ident = srw.identity()
        self.send_text(200, f"{{ident.group}}/{{ident.worker_id}} revision {{ident.revision}}\\n")
srw.serve_http(H, name="web-1")
print("drained", flush=True)
"""


class ProcessTest(unittest.TestCase):
    def test_serve_http_under_the_contract(self):
        a, b = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
        with a, b, tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "notify.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
                notify.bind(path)
                notify.settimeout(WAIT)
                env = dict(os.environ, LISTEN_FDS="2", LISTEN_FDNAMES="web-0:web-1", NOTIFY_SOCKET=path,
                           SOFTRELOAD_GROUP="web", SOFTRELOAD_WORKER_ID="1", SOFTRELOAD_REVISION="r1",
                           TEST_FDS=f"{a.fileno()},{b.fileno()}")
                proc = subprocess.Popen([sys.executable, "-c", SHIM, "-c", WORKER], env=env,
                                        stdout=subprocess.PIPE, pass_fds=(a.fileno(), b.fileno()))
                try:
                    self.assertEqual(notify.recv(64), b"READY=1")
                    c = Client(b.getsockname())
                    body, closing = c.get()
                    self.assertEqual(body, "web/1 revision r1\n")
                    self.assertFalse(closing)
                    proc.send_signal(signal.SIGTERM)
                    self.assertEqual(notify.recv(64), b"STOPPING=1")
                    body, closing = c.get()
                    self.assertTrue(closing)
                    self.assertTrue(c.closed_cleanly())
                    c.close()
                    out, _ = proc.communicate(timeout=WAIT)
                    self.assertEqual(out, b"drained\n")
                    self.assertEqual(proc.returncode, 0)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()

    def test_stop_signal_while_the_main_thread_holds_a_lock_of_threading(self):
        # The stop signal's handler runs in the main thread between two of
        # its bytecodes. A ThreadingHTTPServer's main thread often holds
        # threading's own lock then (it reaps a finished request's thread as
        # it starts the next one's): the handler must neither start a thread
        # nor take a lock, or the worker hangs, never draining nor exiting.
        script = f"""
import os, signal, sys, threading
sys.path.insert(0, {os.path.dirname(HERE)!r})
import softreload_worker as srw
stopped = threading.Event()
def serve():
    lock = getattr(threading, "_shutdown_locks_lock", None) or threading.Lock()
    with lock:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # bytecodes the handler runs between
            pass
    print("stopped" if stopped.wait({WAIT}) else "not stopped", flush=True)
srw.run(serve, stopped.set, send_ready=False)
"""
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=WAIT)
        self.assertEqual((proc.stdout, proc.returncode), (b"stopped\n", 0), proc.stderr.decode())


if __name__ == "__main__":
    unittest.main()
