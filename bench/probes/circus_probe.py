"""Readiness probe for circusd, run with the peers' venv Python (it needs pyzmq):
`circus_probe.py ENDPOINT IPC_PATH TIMEOUT`. Prints "armed" once imported, then, as
soon as a `status` command sent to ENDPOINT gets circusd's reply, "ready". Tries every
millisecond (a fresh DEALER socket each time the ipc file exists); exits by itself after
TIMEOUT seconds. Not imported by the harness."""
import json
import os
import sys
import time
import uuid

import zmq


def attempt(ctx, endpoint: str) -> bool:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, 1)
    try:
        sock.connect(endpoint)
        sock.send(json.dumps({"id": uuid.uuid4().hex, "command": "status", "properties": {}}).encode())
        return bool(sock.poll(50)) and b"status" in sock.recv()
    finally:
        sock.close()


def main(endpoint: str, path: str, timeout: float) -> int:
    ctx = zmq.Context()
    print("armed", flush=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and attempt(ctx, endpoint):
            print("ready", flush=True)
            return 0
        time.sleep(0.001)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
