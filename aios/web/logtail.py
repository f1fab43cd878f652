"""The live tail of a job's log file, read from disk in the web process (never in the
daemon): the last lines, then each line as it is written, until the browser leaves.

aios.logs.Follower does the reading (copytruncate rotation and replaced files included,
memory bounded whatever the lines). `Tails` owns the one inotify instance of this
process, shared by every tail (a user has few: 128 by default), and wakes a tail when
its file changes; where inotify is missing or out of watches, a tail looks every
POLL seconds. This module frames the lines for Server-Sent Events (a stamped line with
its local time and stream).
"""
from __future__ import annotations

import asyncio
import time

from ..fswatch import FileWatches, open_watcher
from ..logformat import moment, parse
from ..logs import Follower
from .security import Refused
from .sse import KEEPALIVE, frame

LINE_LIMIT = 16 * 1024        # longer lines are cut (with a marker) before they are sent
FIRST_BYTES = 256 * 1024      # the first message holds at most this much of the last lines
CHUNK = 256 * 1024            # bytes read from the file per message
TAILS_MAX = 256               # live tails at a time, for all browsers
POLL = 0.5


class Tails:
    """The log tails of one event loop: at most TAILS_MAX, sharing one inotify instance."""

    def __init__(self):
        self.watches: FileWatches | None = None
        self.open_tails = 0

    def open(self, path: str) -> Tail:
        """A new tail of path (close() it); Refused when TAILS_MAX are open."""
        if self.open_tails >= TAILS_MAX:
            raise Refused(503, f"{TAILS_MAX} log tails are open already; close one and reload")
        self.open_tails += 1
        return Tail(self, path)

    def watch(self, path: str, wake):
        """A watch of path through the shared instance, or None (then poll)."""
        if self.watches is None:
            watcher = open_watcher()
            if watcher is None:
                return None
            self.watches = FileWatches(watcher)
            asyncio.get_running_loop().add_reader(self.watches.fileno(), self.watches.dispatch)
        try:
            return self.watches.add(path, wake)
        except OSError:
            return None         # no folder yet, or no inotify watches left: poll

    def close(self) -> None:
        if self.watches is not None:
            asyncio.get_running_loop().remove_reader(self.watches.fileno())
            self.watches.close()
            self.watches = None


class Tail:
    """One browser's tail of one log file."""

    def __init__(self, tails: Tails, path: str):
        self.tails = tails
        self.changed = asyncio.Event()
        self.follower = Follower(path, max_line=LINE_LIMIT, chunk=CHUNK)
        self.watched = tails.watch(path, self.changed.set)

    async def run(self, lines: int, write) -> None:
        """Send the last lines, then new ones, as `lines` messages, until cancelled (the
        client left) or a write fails."""
        follower = self.follower
        await write(b"retry: 1000\n\n" + frame("lines", first_lines(follower.last(lines))))
        quiet_since = time.monotonic()
        while True:
            self.changed.clear()
            new = follower.read()
            if new:
                await write(frame("lines", [_text(line) for line in new]))
                quiet_since = time.monotonic()
            if follower.behind:
                await asyncio.sleep(0)      # the rest in the next turn: other clients have theirs
                continue
            try:
                await asyncio.wait_for(self.changed.wait(), KEEPALIVE if self.watched else POLL)
            except asyncio.TimeoutError:
                if time.monotonic() - quiet_since >= KEEPALIVE:
                    await write(b": keepalive\n\n")
                    quiet_since = time.monotonic()

    def close(self) -> None:
        self.tails.open_tails -= 1
        if self.watched is not None and self.tails.watches is not None:
            self.tails.watches.remove(self.watched)
        self.watched = None


def first_lines(lines: list[bytes]) -> list[str]:
    """The newest of `lines` that fit in FIRST_BYTES, as text."""
    kept, size = [], 0
    for line in reversed(lines):
        size += len(line) + 1
        if size > FIRST_BYTES:
            break
        kept.append(_text(line))
    return kept[::-1]


def _text(line: bytes) -> str:
    """A line as the page shows it: a stamped one as "2026-11-29 18:00:00.123 err text"
    (local time; out or err), a raw one as it is."""
    record = parse(line)
    text = record.text.decode("utf-8", errors="replace").rstrip("\r")
    if record.ts is None:
        return text
    return f"{moment(record.ts)} {'err' if record.stream == 'stderr' else 'out'} {text}"
