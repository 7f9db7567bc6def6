"""The reloadable worker of the walkthrough: an HTTP server that answers with
the greeting in greeting.txt and the revision it runs.

softreload_worker.py is sdk/python's library, copied beside the worker
because the code ConfigMap holds files, not directories. It serves on the
socket the agent passes, says READY=1 once it serves, and on SIGTERM drains
as docs/agent.md asks: requests in flight are answered with
"Connection: close" and idle kept-alive connections are closed, so no
request fails. Change greeting.txt (or this file) in the code ConfigMap and
softreload replaces the workers one at a time.
"""
import os

import softreload_worker

REVISION = softreload_worker.identity().revision
with open("greeting.txt", encoding="utf-8") as f:
    GREETING = f.read().strip()


class Handler(softreload_worker.RequestHandler):
    def do_GET(self):
        body = f"{GREETING} (revision {REVISION})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Worker-Pid", str(os.getpid()))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    softreload_worker.serve_http(Handler)
