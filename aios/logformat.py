"""The stamped job log: its line format, the stamping of what a job wrote, and reading a
line back. Pure: no I/O (the local time zone is the one thing read, by time.localtime).

A stamped log holds one record per line, in the layout of the Kubernetes CRI container
log (what containerd and CRI-O write; fluent-bit, promtail and vector parse it as "cri"):

    2026-11-29T18:00:00.123+01:00 stderr F Address already in use
    TIME                          STREAM TAG TEXT

TIME is RFC 3339 with milliseconds: local time with its UTC offset (`[logs] timestamps =
"local"`, the default of new homes; the offset keeps the hour that repeats when clocks go
back in order) or UTC with Z ("utc"). STREAM is stdout or stderr. TAG is F for a record
that ends its line, P for a piece of a line that goes on in the next record of the same
stream (an unfinished line longer than LINE_LIMIT, or left unfinished for a while). TEXT
is the job's bytes as written, without the newline. A line is stamped with the moment its
end was read from the job's pipe. `timestamps = "none"` keeps raw files: the job's
output as it wrote it, stdout and stderr merged, no time; such lines (also those written
before a home turned stamps on) read back as records without time or stream.

Stamping works on whole chunks as read from a pipe (bytes.replace on the newlines, never a
Python loop per line): `stamp(held, chunk, head)` returns the records of the complete
lines and the unfinished rest to hold until more comes. Imports nothing from aios.
"""
from __future__ import annotations

import time

from .record import record

__all__ = ["FORMATS", "STREAMS", "LINE_LIMIT", "Line", "Timestamps", "timestamp", "head", "stamp",
           "unfinished", "moment", "parse", "parse_time"]

FORMATS = ("local", "utc", "none")     # [logs] timestamps
STREAMS = ("stdout", "stderr")
LINE_LIMIT = 16 * 1024                  # an unfinished line is held up to this, then written as P pieces


@record
class Line:
    """One line of a job log read back: ts (seconds since the epoch) and stream are None
    for a raw line; partial is True for a P piece (the line goes on in a later record)."""

    ts: float | None
    stream: str | None
    partial: bool
    text: bytes


# ---------------------------------------------------------------- writing


def timestamp(t: float, fmt: str) -> bytes:
    """TIME of a record for the moment t, in fmt "local" or "utc"."""
    secs, millis = divmod(round(t * 1000), 1000)
    if fmt == "utc":
        tm, zone = time.gmtime(secs), "Z"
    else:
        tm = time.localtime(secs)
        offset = tm.tm_gmtoff // 60
        zone = f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    return (f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T{tm.tm_hour:02d}:{tm.tm_min:02d}:"
            f"{tm.tm_sec:02d}.{millis:03d}{zone}").encode()


class Timestamps:
    """timestamp(t, fmt) with the calendar part worked out once per second (a writer
    stamps many chunks a second)."""

    __slots__ = ("fmt", "second", "before", "after")

    def __init__(self, fmt: str):
        self.fmt, self.second, self.before, self.after = fmt, None, b"", b""

    def __call__(self, t: float) -> bytes:
        secs, millis = divmod(round(t * 1000), 1000)
        if secs != self.second:
            whole = timestamp(secs, self.fmt)     # ...SS.000ZONE: keep what surrounds the millis
            self.second, self.before, self.after = secs, whole[:20], whole[23:]
        return self.before + b"%03d" % millis + self.after


def head(stamp_: bytes, stream: str) -> bytes:
    """What every record of one chunk begins with: TIME, STREAM and a space."""
    return stamp_ + b" " + stream.encode() + b" "


def stamp(held: bytes, chunk: bytes, head_: bytes, limit: int = LINE_LIMIT) -> tuple[bytes, bytes]:
    """(records, rest): the lines that `held` (the unfinished line of an earlier chunk)
    and `chunk` complete, each as an F record beginning with head_; and the unfinished
    rest, to hold until more comes. A rest longer than `limit` is written as P records of
    `limit` bytes until what is held is no longer."""
    data = held + chunk if held else chunk
    end = data.rfind(b"\n")
    if end < 0:
        out, rest = b"", data
    else:
        full = head_ + b"F "
        out, rest = full + data[:end].replace(b"\n", b"\n" + full) + b"\n", data[end + 1:]
    if len(rest) > limit:
        pieces = []
        while len(rest) > limit:
            pieces.append(head_ + b"P " + rest[:limit] + b"\n")
            rest = rest[limit:]
        out += b"".join(pieces)
    return out, rest


def unfinished(held: bytes, head_: bytes, ended: bool) -> bytes:
    """The record of a held line written before its newline came: an F record if its
    stream ended (the line is complete), else a P piece (the line goes on later)."""
    return head_ + (b"F " if ended else b"P ") + held + b"\n" if held else b""


# ---------------------------------------------------------------- reading


def moment(ts: float) -> str:
    """A record's time as people read it: local, to the millisecond ("2026-11-29 18:00:00.123")."""
    seconds, millis = divmod(round(ts * 1000), 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{millis:03d}"



_STREAM_BYTES = {b"stdout": "stdout", b"stderr": "stderr"}
_TAGS = {b"F": False, b"P": True}


def parse(line: bytes) -> Line:
    """A line of a log file (without its newline) as a Line: a record of a stamped log, or
    a raw line (no time, no stream) when it is not one."""
    space = line.find(b" ", 10, 40) if line[:2].isdigit() else -1
    if space > 0:
        stream = _STREAM_BYTES.get(line[space + 1:space + 7])
        partial = _TAGS.get(line[space + 8:space + 9])
        if stream and partial is not None and line[space + 7:space + 8] == b" " \
                and line[space + 9:space + 10] in (b" ", b""):
            ts = parse_time(line[:space])
            if ts is not None:
                return Line(ts=ts, stream=stream, partial=partial, text=line[space + 10:])
    return Line(ts=None, stream=None, partial=False, text=line)


def parse_time(text: bytes) -> float | None:
    """Seconds since the epoch of an RFC 3339 time as TIME is written (a time without an
    offset is local), or None if text is not one."""
    from datetime import datetime

    try:
        value = text.decode("ascii")
        if value.endswith(("Z", "z")):
            value = value[:-1] + "+00:00"
        return datetime.fromisoformat(_micro(value)).timestamp()
    except (ValueError, UnicodeDecodeError):
        return None


def _micro(value: str) -> str:
    """value with a fraction of any length as microseconds (what fromisoformat reads
    before Python 3.11: 3 or 6 digits)."""
    dot = value.find(".", 19)
    if dot < 0:
        return value
    end = dot + 1
    while end < len(value) and value[end].isdigit():
        end += 1
    return value[:dot + 1] + (value[dot + 1:end] + "000000")[:6] + value[end:]
