"""Per-job log files: open for a job's output, size-based rotation, tail and follow.

A job writes to its log through one O_APPEND fd that it keeps for its whole life, so
rotation is copytruncate: the file is copied to PATH.1 (older copies shift to PATH.2 ...
PATH.KEEP, the oldest dropped) and then truncated in place; the job's next write lands
at the new end of the file. Lines written between the copy and the truncation are lost,
which is the price of never having to reopen a running job's output.

`tail` reads backwards in blocks and never the whole file. `Follower` reads what is
appended by blocks, with memory bounded whatever the lines (a newline-free log too).
`follow` (the CLI's `logs -f`) waits on inotify for the file to change, or looks every
100 ms where inotify is missing; the dashboard waits on its own shared inotify instance.
`last_words` reads a failed job's last stderr lines (a bounded read of the log's end).
Imports aios.homefs, aios.fswatch when following, and aios.logformat to read stamped lines.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

from . import homefs

__all__ = ["open_log", "rotate_if_needed", "tail", "follow", "last_words"]

_BLOCK = 64 * 1024
_TAIL_LIMIT = 16 * 1024 * 1024   # tail never reads more than this, whatever the lines
_FOLLOW_CHUNK = 1024 * 1024      # follow reads at most this much per round
_MIN_POLL = 0.1
_FLOOD_SLACK = 1024 * 1024       # rotation copies a whole log unless it passed max_bytes by more
_FLOOD_KEPT = 4 * 1024 * 1024     # what a flooded log keeps, at most, of what was dropped


def open_log(path: str, base: str | None = None) -> int:
    """An O_APPEND fd on path (mode 0o640), creating the file and its folder (0o750).
    No link is followed below `base` (by default the folder above the log's own, so
    a link planted at logs/ or at the log itself is refused with homefs.UnsafePath)."""
    base, relative = _below(path, base)
    try:
        return homefs.open_below(base, relative, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    except homefs.UnsafePath:
        raise
    except OSError as exc:
        raise _one_line(exc, "cannot open the log", path) from None


def _one_line(exc: OSError, doing: str, path: str) -> OSError:
    """No descriptor left, a full disk...: one line naming the log, as a failed spawn says it."""
    import errno

    from .errors import SpawnError

    return SpawnError(f"{doing} {path}: {exc.strerror} ({errno.errorcode.get(exc.errno, exc.errno)})", exc.errno)


def _below(path: str, base: str | None) -> tuple[str, str]:
    path = os.path.abspath(path)
    base = os.path.abspath(base) if base is not None else os.path.dirname(os.path.dirname(path))
    return base, os.path.relpath(path, base)


# ---------------------------------------------------------------- rotation


def rotate_if_needed(path: str, max_bytes: int, keep: int, base: str | None = None) -> bool:
    """Copytruncate path once it is larger than max_bytes; True if it was rotated.

    Keeps at most `keep` copies (PATH.1 newest ... PATH.KEEP oldest); keep 0 truncates
    without a copy. A log that passed max_bytes by more than max_bytes (and more than
    1 MiB) is being flooded faster than rotation looks at it: it is truncated first and
    PATH.1 keeps only its last bytes (at most max_bytes, and 4 MiB), after a line saying
    how much was dropped, so that a flood costs one small copy and the disk stays bounded.

    Everything happens inside the log's folder, opened as open_log does: no link below
    `base` is followed; a copy is written under a new name and renamed into place, so a
    link planted at PATH.N is replaced, never written through.
    """
    base, relative = _below(path, base)
    where, name = os.path.split(relative)
    try:
        folder = homefs.folder_below(base, where)
    except FileNotFoundError:
        return False
    except homefs.UnsafePath:
        raise
    except OSError as exc:
        raise _one_line(exc, "cannot rotate the log", path) from None
    try:
        return _rotate_in(folder, name, path, max_bytes, keep)
    finally:
        os.close(folder)


def _rotate_in(folder: int, name: str, path: str, max_bytes: int, keep: int) -> bool:
    try:
        fd = homefs.open_in(folder, name, os.O_RDWR, shown=path)
    except FileNotFoundError:
        return False
    try:
        return _rotate(folder, name, fd, max_bytes, keep)
    finally:
        os.close(fd)


def _rotate(folder: int, name: str, fd: int, max_bytes: int, keep: int) -> bool:
    size = os.fstat(fd).st_size
    if size <= max_bytes:
        return False
    if size - max_bytes > max(max_bytes, _FLOOD_SLACK):
        _rotate_flood(folder, name, fd, size, min(max_bytes, _FLOOD_KEPT), keep)
        return True
    if keep > 0:
        _shift(folder, name, keep)
        _copy(fd, size, folder, f"{name}.1")
    os.ftruncate(fd, 0)
    return True


def _rotate_flood(folder: int, name: str, fd: int, size: int, kept: int, keep: int) -> None:
    """Read the tail, truncate at once (the job goes on writing), then write the copy."""
    tail = os.pread(fd, kept, size - kept)
    os.ftruncate(fd, 0)
    if keep == 0:
        return
    newline = tail.find(b"\n")
    tail = tail[newline + 1:] if 0 <= newline < len(tail) - 1 else tail
    _shift(folder, name, keep)
    with _new_file(folder, f"{name}.1") as out:
        os.write(out, b"[aios: %d bytes of output dropped: the job wrote faster than its log is rotated]\n"
                 % (size - len(tail)))
        homefs.write_all(out, tail)


def _shift(folder: int, name: str, keep: int) -> None:
    """NAME.(keep-1) -> NAME.keep ... NAME.1 -> NAME.2, dropping the oldest (renames move
    names, never what a link points to)."""
    for i in range(keep - 1, 0, -1):
        try:
            os.replace(f"{name}.{i}", f"{name}.{i + 1}", src_dir_fd=folder, dst_dir_fd=folder)
        except FileNotFoundError:
            pass


def _copy(src_fd: int, size: int, folder: int, dst: str) -> None:
    """Copy the first `size` bytes of src_fd (the end it had when rotation began, not
    wherever it moved meanwhile: a job writing faster than the copy goes would keep it
    going for as long as it writes) to a new file named dst, in the kernel where it can."""
    with _new_file(folder, dst) as out:
        if hasattr(os, "sendfile"):
            _sendfile_all(src_fd, out, size)
        else:
            _read_write_all(src_fd, out, size)


@contextmanager
def _new_file(folder: int, name: str):
    """An fd on a new 0o640 file that becomes `name` in folder once written (a link or an
    older copy at that name is replaced); removed if writing it fails."""
    temporary = f".{name}.{os.getpid()}.tmp"
    try:
        os.unlink(temporary, dir_fd=folder)
    except FileNotFoundError:
        pass
    fd = homefs.open_in(folder, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        yield fd
        os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        os.unlink(temporary, dir_fd=folder)
        raise
    finally:
        os.close(fd)


def _sendfile_all(src_fd: int, dst_fd: int, size: int) -> None:
    offset = 0
    while offset < size:
        sent = os.sendfile(dst_fd, src_fd, offset, min(_BLOCK * 16, size - offset))
        if sent == 0:
            return
        offset += sent


def _read_write_all(src_fd: int, dst_fd: int, size: int) -> None:
    offset = 0
    while offset < size:
        block = os.pread(src_fd, min(_BLOCK, size - offset), offset)
        if not block:
            return
        homefs.write_all(dst_fd, block)
        offset += len(block)


# ---------------------------------------------------------------- reading


MAX_LINE = 1024 * 1024           # a longer line is cut to this and CUT_MARK; its rest is skipped
CUT_MARK = b" [line cut]"


def tail(path: str, n: int) -> list[str]:
    """The last n lines of path (without their newlines), the unfinished last one
    included; [] if it does not exist."""
    follower = Follower(path)
    lines = follower.last(n) + ([follower.partial] if follower.partial else [])
    return [_text(line) for line in lines[-n:]] if n > 0 else []


class Follower:
    """What is appended to a log file, a complete line at a time, from where it was when
    the Follower was made (or from its start, if it did not exist yet, or from_start). A truncated
    (copytruncated) or replaced file is followed from its new start.

    Whatever the file holds, a Follower keeps at most `max_line` bytes of an unfinished
    line and reads at most `chunk` bytes per read(), each byte once: a line longer than
    max_line is returned cut (its first max_line bytes and CUT_MARK) as soon as it is
    that long, and the rest of it is skipped. Lines are bytes, without their newline."""

    def __init__(self, path: str, max_line: int = MAX_LINE, chunk: int = _FOLLOW_CHUNK, from_start: bool = False):
        st = _stat(path)
        self.path, self.partial, self.max_line, self.chunk = path, b"", max_line, chunk
        self.pos, self.ino = (st.st_size if not from_start else 0, st.st_ino) if st is not None else (0, None)
        self.skipping = False    # the line being read was cut: drop bytes up to its newline
        self._watch = None       # a fswatch.FileWatch once wait() is called; False: none to be had
        self.behind = False      # the last read() stopped before the end of the file

    def last(self, n: int) -> list[bytes]:
        """The last n complete lines, read backwards in blocks (at most n + 1 lines of
        max_line bytes); following goes on from the end they were read up to."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return []
        with f:
            self.ino = os.fstat(f.fileno()).st_ino
            data, at_line_start = _read_tail(f, n, min(_TAIL_LIMIT, (n + 1) * (self.max_line + 1)))
            self.pos = f.seek(0, os.SEEK_END)
        self.partial, self.skipping = b"", not at_line_start    # else it begins inside a line
        lines = self._split(data)
        return lines[-n:] if n > 0 else []

    def read(self) -> list[bytes]:
        """The lines completed (or cut) since the last call ([] if none)."""
        st = _stat(self.path)
        lines = []
        if st is None or st.st_ino != self.ino or st.st_size < self.pos:    # new, replaced or truncated
            self.pos, self.ino = 0, (st.st_ino if st is not None else None)
            if self.partial:        # the rest of that line went with the old content
                lines.append(self.partial)
            self.partial, self.skipping = b"", False
        data = _read_from(self.path, self.pos, st.st_size, self.chunk) if st is not None else b""
        self.pos += len(data)
        self.behind = st is not None and self.pos < st.st_size
        return lines + self._split(data)

    def _split(self, data: bytes) -> list[bytes]:
        """The lines `data` completes, given what came before it."""
        *complete, rest = data.split(b"\n")
        limit = self.max_line
        if complete:
            if self.skipping:
                del complete[0]
            else:
                complete[0] = self.partial + complete[0][:limit + 1]
            self.partial, self.skipping = b"", False
        lines = [line if len(line) <= limit else line[:limit] + CUT_MARK for line in complete]
        if self.skipping:
            return lines
        if len(self.partial) + len(rest) > limit:
            lines.append((self.partial + rest[:limit])[:limit] + CUT_MARK)
            self.partial, self.skipping = b"", True
        else:
            self.partial += rest
        return lines

    def wait(self, timeout: float | None, also: tuple = ()) -> list:
        """Block until the file may hold new lines (written, truncated, created or
        replaced), `timeout` seconds pass (None: no limit) or one of `also` (objects
        with fileno()) is readable; return the readable ones of `also`. Where inotify is
        missing, the file is looked at every _MIN_POLL seconds instead."""
        import select
        import time

        if self._watch is None:
            from .fswatch import watch_file

            self._watch = watch_file(self.path) or False
            timeout = 0      # what was written before the watch existed: read it first
        if self.behind:
            timeout = 0      # read() left some for the next call
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._watch:
                left = _MIN_POLL if left is None else min(left, _MIN_POLL)
            readable, _, _ = select.select([*also, self._watch] if self._watch else list(also), [], [], left)
            ours = [r for r in readable if r is not self._watch]
            if ours or not readable or self._watch.changed():
                return ours

    def close(self) -> None:
        if self._watch:
            self._watch.close()
        self._watch = None


def _read_tail(f, n: int, limit: int) -> tuple[bytes, bool]:
    """Blocks from the end of f until they hold n complete lines, the start of f, or
    `limit` bytes; and whether they begin where a line begins."""
    end = pos = f.seek(0, os.SEEK_END)
    chunks: list[bytes] = []
    newlines = 0
    while pos > 0 and newlines <= n and end - pos < limit:
        step = min(_BLOCK, pos, limit - (end - pos))
        pos -= step
        f.seek(pos)
        chunk = f.read(step)
        chunks.append(chunk)
        newlines += chunk.count(b"\n")
    if pos > 0:
        f.seek(pos - 1)
    return b"".join(reversed(chunks)), pos == 0 or f.read(1) == b"\n"


def follow(path: str):
    """The lines appended to path from now (when follow is called, not at the first
    next()), as text, forever: a generator that sleeps until the file changes."""
    return _follow(Follower(path))


def _follow(follower: Follower):
    try:
        while True:
            lines = follower.read()
            for line in lines:
                yield _text(line)
            if not lines:
                follower.wait(None)
    finally:
        follower.close()


def _text(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")


# ---------------------------------------------------------------- a failed job's last words


REASON_BYTES = 8 * 1024         # how much of a log's end is read for a failed job's reason
REASON_LINES = 3
REASON_WIDTH = 300              # characters of a line kept


def last_words(path: str, n: int = REASON_LINES, most: int = REASON_BYTES) -> dict | None:
    """What a failed job's status shows as its reason: the last n lines it wrote to
    stderr within the last `most` bytes of its log, else its last n lines (a raw log
    does not tell the streams apart), as {"stream": "stderr" or None, "lines": [...]};
    None if the log is missing or empty."""
    from .logformat import parse

    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - most))
            data = f.read(most)
    except OSError:
        return None
    lines = data.split(b"\n")
    if size > most and len(lines) > 1:
        lines = lines[1:]                   # begins inside a line (unless all of it is one)
    parsed = [parse(line.rstrip(b"\r")) for line in lines if line.strip()]
    errors = [line for line in parsed if line.stream == "stderr"]
    chosen = (errors or parsed)[-n:]
    if not chosen:
        return None
    return {"stream": "stderr" if errors else None,
            "lines": [_text(line.text)[:REASON_WIDTH] for line in chosen]}


def _stat(path: str):
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _read_from(path: str, pos: int, size: int, most: int) -> bytes:
    if size <= pos:
        return b""
    try:
        with open(path, "rb") as f:
            f.seek(pos)
            return f.read(min(size - pos, most))
    except FileNotFoundError:
        return b""
