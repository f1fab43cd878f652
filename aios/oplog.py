"""The daemon's operation log: orchestrator.log in the home, one line per event or
message with its local time, written by the daemon however it was started.

In the foreground (`python3 simple_orchestrator.py`, `aios up`, a systemd unit) each line
also goes to stderr. Detached by `aios up -d`, stderr already is orchestrator.log (so
that a crash before the daemon could log is kept there too): each line is written once.
The file is rotated by size like job logs (copytruncate, `[logs] max_size` and `keep`);
neither it nor its copies are opened through a link.
Logging never raises: a full disk or a read-only home must not stop the daemon. Imports
only aios.logs.
"""
from __future__ import annotations

import os
import sys
import time

from . import logs

LOG_FILE = "orchestrator.log"


def open_oplog(home, max_bytes: int, keep: int, stream=None):
    """A function log(message) writing to home/orchestrator.log (and to `stream`, default
    stderr, unless that is the same file)."""
    path = os.path.join(str(home), LOG_FILE)
    stream = sys.stderr if stream is None else stream
    try:
        fd = logs.open_log(path, base=str(home))
    except OSError:
        fd = None   # the home cannot hold it: stderr alone
    echo = fd is None or not _same_file(stream, fd)

    def log(message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n"
        if echo:
            _write_stream(stream, line)
        if fd is not None:
            try:
                os.write(fd, line.encode("utf-8", "replace"))
                if os.fstat(fd).st_size > max_bytes:
                    logs.rotate_if_needed(path, max_bytes, keep, base=str(home))
            except OSError:
                pass

    return log


def _same_file(stream, fd: int) -> bool:
    try:
        mine, theirs = os.fstat(fd), os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _write_stream(stream, line: str) -> None:
    try:
        stream.write(line)
        stream.flush()
    except (OSError, ValueError, UnicodeEncodeError):   # closed, full, or a terminal that cannot show it
        pass
