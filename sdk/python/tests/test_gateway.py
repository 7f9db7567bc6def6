"""Tests of the gateway helpers of softreload_worker (forward, forward_async,
MessageServer) on real unix sockets."""
import asyncio
import os
import select
import socket
import struct
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import softreload_worker as srw  # noqa: E402

WAIT = 60


class Business:
    """A MessageServer on its own copy of a shared socket, as the agent's workers are."""

    def __init__(self, listener, handler):
        self.server = srw.MessageServer(handler, socket.socket(fileno=os.dup(listener.fileno())))
        self.thread = threading.Thread(target=self.server.serve)
        self.thread.start()

    def drain(self):
        self.server.stop()
        self.thread.join(WAIT)
        return not self.thread.is_alive()


def accept(listener):
    """One connection from listener, which a MessageServer may have made
    non-blocking (the flag belongs to the socket all copies share)."""
    while True:
        select.select([listener], [], [], WAIT)
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue
        conn.setblocking(True)
        return conn


class SocketTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "business.sock")
        self.address = "unix://" + self.path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(128)

    def tearDown(self):
        self.listener.close()
        self.dir.cleanup()


class ResolveTest(unittest.TestCase):
    def test_addresses(self):
        cases = {
            "unix": ("unix:///run/app.sock", {}, (socket.AF_UNIX, "/run/app.sock")),
            "unix, local mode": ("unix:///run/app.sock", {"SOFTRELOAD_SOCKET_ROOT": "/tmp/pod-0/"},
                                 (socket.AF_UNIX, "/tmp/pod-0/run/app.sock")),
            "tcp": ("tcp://127.0.0.1:9000", {}, (socket.AF_INET, ("127.0.0.1", 9000))),
            "tcp, any host": ("tcp://0.0.0.0:9000", {}, (socket.AF_INET, ("127.0.0.1", 9000))),
            "tcp6": ("tcp://[::1]:9000", {}, (socket.AF_INET6, ("::1", 9000))),
            "tcp, local mode": ("tcp://0.0.0.0:9000", {"SOFTRELOAD_LISTEN_HOST": "127.0.0.2", "SOFTRELOAD_PORT_OFFSET": "100"},
                                (socket.AF_INET, ("127.0.0.2", 9100))),
        }
        for name, (address, env, want) in cases.items():
            with self.subTest(name):
                self.assertEqual(srw.resolve_address(address, env), want)

    def test_bad_addresses_are_named(self):
        for address in ["/run/app.sock", "unix://run/app.sock", "udp://127.0.0.1:53", "tcp://127.0.0.1"]:
            with self.subTest(address), self.assertRaisesRegex(ValueError, "address '" + address.replace(".", r"\.") + "'"):
                srw.resolve_address(address, {})


class ForwardTest(SocketTest):
    def test_answer(self):
        b = Business(self.listener, lambda m: b"re: " + m)
        try:
            self.assertEqual(srw.forward(self.address, "hello"), b"re: hello")
            self.assertEqual(asyncio.run(srw.forward_async(self.address, b"again")), b"re: again")
        finally:
            self.assertTrue(b.drain())

    def test_handler_error_is_answered_and_not_sent_again(self):
        calls = []

        def broken(message):
            calls.append(message)
            raise KeyError("no such user")

        b = Business(self.listener, broken)
        try:
            with self.assertRaisesRegex(srw.BusinessError, "KeyError: 'no such user'"):
                srw.forward(self.address, "who")
            self.assertEqual(calls, [b"who"])
        finally:
            self.assertTrue(b.drain())

    def taken_then_dropped(self):
        """A worker that takes the first connection, reads its message and
        dies without answering, as a killed worker does; then a live worker
        serves. Returns the messages each one saw."""
        dropped, handled = [], []
        ready = threading.Event()

        def die_once():
            conn = accept(self.listener)
            with conn:
                n = struct.unpack(">I", conn.recv(4))[0]
                dropped.append(conn.recv(n))
            ready.set()

        t = threading.Thread(target=die_once)
        t.start()
        return t, ready, dropped, handled

    def test_message_sent_again_when_its_connection_closed_unanswered(self):
        for name, send in {"forward": lambda: srw.forward(self.address, "m1"),
                           "forward_async": lambda: asyncio.run(srw.forward_async(self.address, "m1"))}.items():
            with self.subTest(name):
                t, ready, dropped, handled = self.taken_then_dropped()
                business = []

                def start_business():
                    ready.wait(WAIT)
                    business.append(Business(self.listener, lambda m: (handled.append(m), b"ok " + m)[1]))

                starter = threading.Thread(target=start_business)
                starter.start()
                try:
                    self.assertEqual(send(), b"ok m1")
                finally:
                    t.join(WAIT)
                    starter.join(WAIT)
                    for b in business:
                        self.assertTrue(b.drain())
                self.assertEqual(dropped, [b"m1"])
                self.assertEqual(handled, [b"m1"])

    def test_answer_cut_short_is_not_sent_again(self):
        seen = []

        def cut():
            conn = accept(self.listener)
            with conn:
                n = struct.unpack(">I", conn.recv(4))[0]
                seen.append(conn.recv(n))
                conn.sendall(struct.pack(">I", 10) + b"\x00abc")

        t = threading.Thread(target=cut)
        t.start()
        with self.assertRaisesRegex(srw.NotAnswered, "cut short"):
            srw.forward(self.address, "m", retry_for=WAIT)
        t.join(WAIT)
        self.assertEqual(seen, [b"m"])

    def test_unavailable_after_retry_for(self):
        self.listener.close()
        os.unlink(self.path)
        with self.assertRaisesRegex(srw.Unavailable, "no worker at unix://.* answered within 0.2s"):
            srw.forward(self.address, "m", retry_for=0.2)
        with self.assertRaises(srw.Unavailable):
            asyncio.run(srw.forward_async(self.address, "m", retry_for=0.2))


class DrainTest(SocketTest):
    def test_message_in_flight_answered_after_stop(self):
        started, release = threading.Event(), threading.Event()

        def slow(m):
            started.set()
            release.wait(WAIT)
            return b"late " + m

        b = Business(self.listener, slow)
        got = []
        t = threading.Thread(target=lambda: got.append(srw.forward(self.address, "m")))
        t.start()
        self.assertTrue(started.wait(WAIT))
        b.server.stop()
        self.assertTrue(b.thread.is_alive(), "serve() returned with a message in flight")
        release.set()
        t.join(WAIT)
        self.assertTrue(b.drain())
        self.assertEqual(got, [b"late m"])

    def test_no_message_lost_or_answered_twice_while_workers_are_replaced(self):
        """Clients send without pause while one worker after another drains
        and a new one takes its place on the shared socket."""
        handled = {}
        lock = threading.Lock()

        def handler(gen):
            def handle(m):
                with lock:
                    handled[m] = handled.get(m, 0) + 1
                return f"{gen}:".encode() + m
            return handle

        workers = [Business(self.listener, handler(0)), Business(self.listener, handler(0))]
        stop = threading.Event()
        answers, errors = {}, []

        def client(c):
            i = 0
            while not stop.is_set():
                m = f"c{c}-{i}".encode()
                try:
                    a = srw.forward(self.address, m)
                except Exception as e:  # counted: the test fails on any
                    errors.append(repr(e))
                    return
                answers[m] = a
                i += 1

        clients = [threading.Thread(target=client, args=(c,)) for c in range(4)]
        for c in clients:
            c.start()
        for gen in range(1, 6):
            new = Business(self.listener, handler(gen))
            old = workers.pop(0)
            workers.append(new)
            self.assertTrue(old.drain(), "a worker did not drain")
        stop.set()
        for c in clients:
            c.join(WAIT)
        for w in workers:
            self.assertTrue(w.drain())
        self.assertEqual(errors, [])
        self.assertGreater(len(answers), 0)
        for m, a in answers.items():
            self.assertTrue(a.endswith(b":" + m), (m, a))
        self.assertEqual({m: n for m, n in handled.items() if n != 1}, {}, "messages handled more than once")


if __name__ == "__main__":
    unittest.main()
