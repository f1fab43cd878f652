"""The live tail of a job's log file, read from disk in the web process (never in the
daemon): the last lines, then each line as it is written, until the browser leaves.

aios.logs.Follower does the reading (copytruncate rotation and replaced files
included) and wakes this thread when the file changes (the control protocol carries no
log output); this module frames the lines for Server-Sent Events.
"""
from __future__ import annotations

import time

from ..logs import Follower
from .sse import KEEPALIVE, frame

LINE_LIMIT = 16 * 1024        # longer lines are cut (with a marker) before they are sent


def _text(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    return text if len(text) <= LINE_LIMIT else text[:LINE_LIMIT] + " [line cut]"


def stream_log(path: str, lines: int, connection, write) -> None:
    """Send the last lines, then new ones, as `lines` messages, until the client closes
    `connection` (the request's socket) or a write fails."""
    follower = Follower(path)
    try:
        write(b"retry: 1000\n\n" + frame("lines", [_text(line) for line in follower.last(lines)]))
        quiet_since = time.monotonic()
        while True:
            if follower.wait(KEEPALIVE, also=(connection,)) and _closed(connection):
                return
            new = follower.read()
            if new:
                write(frame("lines", [_text(line) for line in new]))
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE:
                write(b": keepalive\n\n")
                quiet_since = time.monotonic()
    finally:
        follower.close()


def _closed(connection) -> bool:
    """The client hung up (it sends nothing else on this stream)."""
    return not connection.recv(1)
