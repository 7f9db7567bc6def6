"""The gateway of the walkthrough: it holds long-lived connections, the way a
websocket gateway does, so its group is marked reloadable: false and a code
change never restarts it.

Each client gets a line "gateway <pid>" when it connects, then every line it
sends comes back as "<pid>: <line>". It serves on the socket the agent
passes (fd 3) and says READY=1 once it accepts.
"""
import os
import select
import signal
import socket
import sys
import threading

PID = os.getpid()


def serve(conn):
    with conn, conn.makefile("rwb", buffering=0) as f:
        f.write(f"gateway {PID}\n".encode())
        for line in f:
            f.write(f"{PID}: ".encode() + line)


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), path)


def main():
    if os.environ.get("LISTEN_PID") != str(PID) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        sys.exit("no socket passed: run me under softreload's agent")
    listener = socket.socket(fileno=3)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
    notify("READY=1")
    while True:
        # The agent passes its sockets non-blocking (docs/agent.md, the
        # worker contract): wait for a connection, then take it.
        select.select([listener], [], [])
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue  # another process took it first
        conn.setblocking(True)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
