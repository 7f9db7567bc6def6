"""The business worker of softreload's gateway pattern (docs/gateway.md):
the code that answers the gateway's messages, in a reloadable group. Change
this file or greeting.txt and reload: the gateway's clients keep their
connections, and their next message is answered by the new code.

softreload_worker.serve_messages takes each message on the socket the agent
passes and drains on the stop signal: it stops accepting and answers every
message it already took, so a reload loses none.
"""
import softreload_worker

REVISION = softreload_worker.identity().revision
with open("greeting.txt", encoding="utf-8") as f:
    GREETING = f.read().strip()


def answer(message):
    return f"{GREETING} (revision {REVISION}): {message.decode()}"


if __name__ == "__main__":
    softreload_worker.serve_messages(answer)
