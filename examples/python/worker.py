"""A softreload worker in Python (standard library only).

softreload_worker (sdk/python, here beside the worker as
`pip install --target .` puts it: the agent runs a snapshot of this
directory) serves on the socket the agent passes (LISTEN_FDS, fd 3), says
READY=1 on NOTIFY_SOCKET, keeps connections alive with no per-request stall,
and on SIGTERM drains: it stops accepting, answers the requests in flight
with "Connection: close", closes idle connections when no request is on
them, and exits.
"""
import os

import softreload_worker

ME = softreload_worker.identity()


class Handler(softreload_worker.RequestHandler):
    def do_GET(self):
        self.send_text(200, f"hello from python, revision {ME.revision}, worker {ME.worker_id}, pid {os.getpid()}\n")


if __name__ == "__main__":
    softreload_worker.serve_http(Handler)
