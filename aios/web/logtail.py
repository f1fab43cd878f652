"""The live tail of a job's log file, read from disk in the web process (never in the
daemon): the last lines, then each line as it is written, until the browser leaves.

The file is checked every POLL seconds while a browser watches it: the control protocol
carries no log output, and the event-driven alternative (inotify, aios.fswatch) is not
among the modules the dashboard may import. A truncated or replaced file (rotation is
copytruncate) is followed from its new start.
"""
from __future__ import annotations

import os
import select
import time

from .sse import KEEPALIVE, frame

POLL = 0.1
TAIL_BYTES = 256 * 1024       # how far back the first lines are looked for
READ_LIMIT = 1024 * 1024      # at most this much is read in one turn
LINE_LIMIT = 16 * 1024        # longer lines are cut (with a marker) before they are sent


class LogFollower:
    def __init__(self, path: str):
        self.path, self.pos, self.ino, self.partial = path, 0, None, b""

    def start(self, lines: int) -> list[str]:
        """The last `lines` complete lines; following continues from the end of the file."""
        st = self._stat()
        if st is None:
            return []
        self.ino = st.st_ino
        begin = max(0, st.st_size - TAIL_BYTES)
        data = self._read(begin, st.st_size)
        self.pos = begin + len(data)
        if begin > 0:
            data = data.split(b"\n", 1)[-1]     # a line cut in half by the window
        return self._lines(data)[-lines:] if lines > 0 else []

    def read_new(self) -> list[str]:
        st = self._stat()
        if st is None:
            return []
        if st.st_ino != self.ino or st.st_size < self.pos:
            self.ino, self.pos = st.st_ino, 0
        data = self._read(self.pos, min(st.st_size, self.pos + READ_LIMIT))
        self.pos += len(data)
        return self._lines(data)

    def _lines(self, data: bytes) -> list[str]:
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [_text(line) for line in lines]

    def _stat(self):
        try:
            return os.stat(self.path)
        except OSError:
            return None

    def _read(self, begin: int, end: int) -> bytes:
        if end <= begin:
            return b""
        try:
            with open(self.path, "rb") as f:
                f.seek(begin)
                return f.read(end - begin)
        except OSError:
            return b""


def _text(line: bytes) -> str:
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    return text if len(text) <= LINE_LIMIT else text[:LINE_LIMIT] + " [line cut]"


def stream_log(path: str, lines: int, connection, write) -> None:
    """Send the last lines, then new ones, as `lines` messages, until the client closes
    `connection` (the request's socket) or a write fails."""
    follower = LogFollower(path)
    write(b"retry: 1000\n\n" + frame("lines", follower.start(lines)))
    quiet_since = time.monotonic()
    while not _closed(connection):
        new = follower.read_new()
        if new:
            write(frame("lines", new))
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > KEEPALIVE:
            write(b": keepalive\n\n")
            quiet_since = time.monotonic()


def _closed(connection) -> bool:
    """Wait up to POLL for the client to hang up (it sends nothing else on this stream)."""
    readable, _, _ = select.select([connection], [], [], POLL)
    return bool(readable) and not connection.recv(1)
