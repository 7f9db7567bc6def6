"""The reloadable worker of the walkthrough: an HTTP server that answers with
the greeting in greeting.txt and the revision it runs.

It serves on the socket the agent passes (LISTEN_FDS, fd 3), says READY=1 on
NOTIFY_SOCKET once it serves, and on SIGTERM stops accepting and finishes the
requests in flight before it exits. Change greeting.txt (or this file) in the
code ConfigMap and softreload replaces the workers one at a time.
"""
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REVISION = os.environ.get("SOFTRELOAD_REVISION", "")
with open("greeting.txt", encoding="utf-8") as f:
    GREETING = f.read().strip()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An idle keep-alive connection is closed after 5s, so that a stopping
    # worker, which waits for its connections, is never held longer.
    timeout = 5

    def do_GET(self):
        body = f"{GREETING} (revision {REVISION})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Worker-Pid", str(os.getpid()))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


def inherited_socket():
    """The first socket the agent passed (sd_listen_fds)."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        sys.exit("no socket passed: run me under softreload's agent")
    sock = socket.socket(fileno=3)
    # Every worker of the group waits on this socket: when another one took
    # the connection, accept must return at once, not block until the next.
    sock.setblocking(False)
    return sock


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), path)


def main():
    server = ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = inherited_socket()
    server.daemon_threads = False
    server.block_on_close = True  # server_close waits for requests in flight

    def stop(signum, frame):
        notify("STOPPING=1")
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    notify("READY=1")
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
