"""The gateway of softreload's gateway pattern (docs/gateway.md): it holds
the clients' WebSocket connections and is never reloaded (its group says
reloadable: false), while the code that answers lives in a reloadable
business group behind a local socket. A reload replaces the business code;
no client connection drops, and the next message is answered by the new
code on the same connection.

Each client gets a text message "gateway <pid> on <host>" when it connects
(in a pod, the host is the pod's name: a client through a Service learns
which pod took it); then every message it sends is forwarded to the
business at BUSINESS_ADDRESS (a listen address of the business group, e.g.
unix:///tmp/app-business.sock) on a fresh connection, and the answer comes
back as one message. Messages of one client are answered in the order they
were sent. softreload_worker.forward_async sends a message again while no
business worker has answered it, so a message whose worker is killed or
crashes is not lost.

It needs the websockets library (Debian: apt-get install python3-websockets;
PyPI: websockets), which the agent's snapshot of the code does not hold: it
comes from the image.
"""
import asyncio
import os
import socket
import sys

import websockets

import softreload_worker

PID = os.getpid()
HOST = socket.gethostname()
BUSINESS = os.environ.get("BUSINESS_ADDRESS", "")


async def relay(ws, path=None):
    """One client: its greeting, then one answer for each of its messages."""
    await ws.send(f"gateway {PID} on {HOST}")
    async for message in ws:
        try:
            answer = (await softreload_worker.forward_async(BUSINESS, message)).decode()
        except (softreload_worker.Unavailable, softreload_worker.NotAnswered, softreload_worker.BusinessError) as e:
            answer = f"error: {e}"
        await ws.send(answer)


async def main():
    if not BUSINESS:
        sys.exit("BUSINESS_ADDRESS is not set: the listen address of the business group, e.g. unix:///tmp/app-business.sock")
    softreload_worker.resolve_address(BUSINESS)  # a bad address fails the start, naming it
    sock = softreload_worker.listen_socket()
    sock.setblocking(False)  # the worker contract: never block in accept
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in softreload_worker.STOP_SIGNALS:
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(relay, sock=sock):
        softreload_worker.ready()
        await stop
    # Leaving the block closed every connection with 1001 (going away): a
    # gateway stops only when its pod does.


if __name__ == "__main__":
    asyncio.run(main())
