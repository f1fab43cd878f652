"""The log writer: one small process per home that reads what jobs write to their stdout
and stderr pipes, stamps each line (logformat) and appends it to the job's log file.

Why a process of its own. A job writing its log file directly (as with `timestamps =
"none"`) cannot have its lines stamped or its streams told apart, so its output has to
go through pipes, and something has to read them. Not the daemon: it would be in the
path of every byte a job writes (its loop busy with a chatty job while it should answer
and schedule), and a job's pipe would lose its reader, and the job its life (SIGPIPE),
whenever the daemon crashes or re-executes. Not one reader per job: a Python process per
job doubles the processes and costs 10 MB each. So one writer per home, outliving the
daemon: the daemon makes each job's two pipes, hands their read ends to the writer
(SCM_RIGHTS) and keeps a copy of each, never reading it, so that a crash of the writer
never breaks a job's pipe either: the daemon starts a new writer and hands it every end
it holds. A daemon that starts finds the writer the last one left through its socket and
takes copies of the ends it reads. Only when both die at once does a job's next write
fail (EPIPE).

What it costs (`python3 -m bench --only logs --rounds 7 --no-peers`, 2 cores, a job
writing 100,000 lines of 50 bytes, one write() each; medians, min-max, in
bench/results/20261129T192919.json): every line in the log after 166 ms (153-199)
stamped vs 173 ms (152-273) written directly, 0.94x pair by pair (0.83x in another run);
the daemon's CPU 0 ms stamped (0-10 direct: 10 ms is the clock's resolution; it never
touches the bytes); the writer's 20 ms (20-30). Writing to a pipe is cheaper for the job than a
write() per line to the file, and the writer appends 64 KiB at a time. Stamping is one
bytes.replace per chunk read, never a loop per line; and after a turn that read less than
SMALL the writer waits GATHER (1 ms) before looking again, so that a job printing line by
line is read in batches: without that wait it woke per line and used 350 ms of CPU for
those 100,000 lines (Python's print with flush); with it, 30-40 ms, its start included.

The writer runs while a daemon is connected or a pipe is open; it exits once it has
neither. Its socket is HOME/logwriter.sock (SOCK_SEQPACKET, mode 0600), which the daemon
binds and the writer inherits, so what the daemon sends right after starting it waits in
the socket even if the daemon dies meanwhile. Only its own user (and root) may connect;
a new connection replaces the previous one (there is one daemon per home). Messages are
JSON, one per packet, with at most one descriptor:

    daemon -> writer  {"op": "add", "path": P, "stream": "stdout"|"stderr", "format": "local"|"utc"}
                        with a pipe's read end: stamp its lines into the file P
                      {"op": "list"}: send me a copy of every read end you hold
    writer -> daemon  {"op": "pipe", "id": INO, "path", "stream", "format"} with a read end, for
                        each (the reply to list), then {"op": "listed"}
                      {"op": "done", "id": INO}: that pipe ended (every process holding its write
                        end closed it) and all it held is written

A pipe is named by its inode number, which both sides read with fstat. An unfinished line
is held up to logformat.LINE_LIMIT bytes and HOLD seconds, then written as a P piece.
Started as `python -S -c ... LISTEN_FD`; writes its own complaints to stderr (the home's
orchestrator.log). Imports logformat and logs (open_log).
"""
from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import stat
import sys
import time

from . import logformat, logs
from .unixsock import peer_uid

CHUNK = 64 * 1024            # bytes read from a pipe per turn
GATHER = 0.001               # after a turn that read less than SMALL, let more gather before the next
SMALL = 16 * 1024
HOLD = 1.0                   # seconds an unfinished line waits for its end before it is written
START_WAIT = 30.0            # seconds a new writer waits for its first daemon
SEND_TIMEOUT = 5.0           # a daemon that does not read its messages this long is dropped
ACCEPT_PAUSE = 0.5           # out of descriptors, a waiting connection is looked at again after this
MESSAGE_MAX = 8192           # bytes of one message (a path of up to PATH_MAX, and the rest)
SOCKET_NAME = "logwriter.sock"


class Pipe:
    """One pipe the writer reads: where its lines go, and the unfinished line it holds."""

    __slots__ = ("fd", "ino", "path", "stream", "format", "held", "held_since")

    def __init__(self, fd: int, ino: int, path: str, stream: str, fmt: str):
        self.fd, self.ino, self.path, self.stream, self.format = fd, ino, path, stream, fmt
        self.held, self.held_since = b"", 0.0

    def describe(self) -> dict:
        return {"op": "pipe", "id": self.ino, "path": self.path, "stream": self.stream, "format": self.format}


class Files:
    """The log files being written, each opened once (O_APPEND, so that rotation by
    copytruncate works) and closed when its last pipe ends."""

    def __init__(self):
        self.open: dict[str, list] = {}      # path -> [fd, users]

    def use(self, path: str) -> None:
        entry = self.open.get(path)
        if entry is not None and not _still_there(entry[0], path):
            os.close(entry[0])       # deleted or replaced: write where the log is now
            entry[0] = logs.open_log(path)
        if entry is None:
            entry = self.open[path] = [logs.open_log(path), 0]
        entry[1] += 1

    def release(self, path: str) -> None:
        entry = self.open[path]
        entry[1] -= 1
        if entry[1] == 0:
            os.close(entry[0])
            del self.open[path]

    def write(self, path: str, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.open[path][0], view):]
        except OSError as exc:       # a full disk: the lines are lost, the writer goes on
            _complain(f"cannot write {path}: {exc.strerror}; {len(view)} bytes lost")


def _still_there(fd: int, path: str) -> bool:
    try:
        mine, now = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


class Writer:
    def __init__(self, listener: socket.socket, clock=time.time):
        self.listener, self.clock = listener, clock
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, self._accept)
        listener.setblocking(False)
        self.link: socket.socket | None = None
        self.linked_once = False
        self.pipes: dict[int, Pipe] = {}                 # fd -> Pipe
        self.inos: set[int] = set()                      # the pipes' inode numbers
        self.holding: set[Pipe] = set()                  # pipes with an unfinished line
        self.files = Files()
        self.stamps = {fmt: logformat.Timestamps(fmt) for fmt in ("local", "utc")}
        self.read_bytes = 0                              # read from the pipes this turn
        self.accept_after: float | None = None           # out of descriptors: accept again then

    def run(self) -> None:
        started = time.monotonic()
        while self.link is not None or self.pipes or (
                not self.linked_once and time.monotonic() - started < START_WAIT):
            self.read_bytes = 0
            self._resume_accepting(time.monotonic())
            for key, _ in self.selector.select(self._timeout(started)):
                key.data()
            self._write_held(time.monotonic())
            if 0 < self.read_bytes < SMALL:
                time.sleep(GATHER)   # a job printing line by line is read in batches, not per line
            if self.link is None and not self.pipes:
                self._accept()       # a daemon that connected just now keeps us going
        self.listener.close()

    def _timeout(self, started: float) -> float | None:
        now = time.monotonic()
        waits = [pipe.held_since + HOLD - now for pipe in self.holding]
        if not self.linked_once:
            waits.append(started + START_WAIT - now)
        if self.accept_after is not None:
            waits.append(self.accept_after - now)
        return max(0.0, min(waits)) if waits else None

    # ---------------------------------------------------------------- the daemon
    def _accept(self) -> None:
        if self.accept_after is not None:
            return
        try:
            conn, _ = self.listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self._pause_accepting(time.monotonic())
            return
        if peer_uid(conn) not in (os.getuid(), 0):
            conn.close()
            return
        if self.link is not None:
            self._drop_link()
        conn.settimeout(SEND_TIMEOUT)
        self.link, self.linked_once = conn, True
        self.selector.register(conn, selectors.EVENT_READ, self._receive)

    def _pause_accepting(self, now: float) -> None:
        """Out of descriptors: the connection waits in the backlog and is taken ACCEPT_PAUSE
        seconds later, rather than waking this loop at once, again and again."""
        _complain(f"out of descriptors: a connection waits {ACCEPT_PAUSE:g} s")
        self.selector.unregister(self.listener)
        self.accept_after = now + ACCEPT_PAUSE

    def _resume_accepting(self, now: float) -> None:
        if self.accept_after is not None and now >= self.accept_after:
            self.accept_after = None
            self.selector.register(self.listener, selectors.EVENT_READ, self._accept)

    def _drop_link(self) -> None:
        self.selector.unregister(self.link)
        self.link.close()
        self.link = None

    def _receive(self) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(self.link, MESSAGE_MAX, 1)
        except (BlockingIOError, socket.timeout):
            return
        except OSError:
            return self._drop_link()
        if not data and not fds:
            return self._drop_link()          # the daemon is gone (crash, re-exec, exit)
        message = _decode(data) if not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) else None
        if message is not None and message.get("op") == "add" and len(fds) == 1:
            if self._add(fds[0], message):
                return
        elif message == {"op": "list"} and not fds:
            return self._list()
        for fd in fds:
            os.close(fd)
        _complain(f"refused a message from the daemon: {data[:200]!r}")
        return None

    def _add(self, fd: int, message: dict) -> bool:
        path, stream, fmt = message.get("path"), message.get("stream"), message.get("format")
        if not (isinstance(path, str) and os.path.isabs(path) and "\0" not in path
                and stream in logformat.STREAMS and fmt in self.stamps):
            return False
        info = os.fstat(fd)
        if not stat.S_ISFIFO(info.st_mode) or info.st_ino in self.inos:
            return False
        try:
            self.files.use(path)
        except OSError as exc:
            _complain(f"cannot open {path}: {exc.strerror}; its job's {stream} is not logged")
            return False
        os.set_blocking(fd, False)
        pipe = self.pipes[fd] = Pipe(fd, info.st_ino, path, stream, fmt)
        self.inos.add(pipe.ino)
        self.selector.register(fd, selectors.EVENT_READ, lambda: self._read(pipe))
        return True

    def _list(self) -> None:
        for pipe in list(self.pipes.values()):
            self._send(pipe.describe(), [pipe.fd])
        self._send({"op": "listed"})

    def _send(self, message: dict, fds=()) -> None:
        if self.link is None:
            return
        try:
            socket.send_fds(self.link, [json.dumps(message).encode()], list(fds))
        except OSError:                        # gone, or not reading: the next daemon lists again
            self._drop_link()

    # ---------------------------------------------------------------- the jobs' pipes
    def _read(self, pipe: Pipe) -> None:
        try:
            chunk = os.read(pipe.fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            return self._end(pipe)
        self.read_bytes += len(chunk)
        head = logformat.head(self.stamps[pipe.format](self.clock()), pipe.stream)
        held = pipe.held
        records, pipe.held = logformat.stamp(held, chunk, head)
        if not pipe.held:
            self.holding.discard(pipe)
        elif not held or records:                  # an unfinished line began: its wait starts now
            pipe.held_since = time.monotonic()
            self.holding.add(pipe)
        if records:
            self.files.write(pipe.path, records)
        return None

    def _write_held(self, now: float) -> None:
        for pipe in [p for p in self.holding if now - p.held_since >= HOLD]:
            self._write_unfinished(pipe, ended=False)

    def _write_unfinished(self, pipe: Pipe, ended: bool) -> None:
        head = logformat.head(self.stamps[pipe.format](self.clock()), pipe.stream)
        self.files.write(pipe.path, logformat.unfinished(pipe.held, head, ended))
        pipe.held = b""
        self.holding.discard(pipe)

    def _end(self, pipe: Pipe) -> None:
        self._write_unfinished(pipe, ended=True)
        self.selector.unregister(pipe.fd)
        del self.pipes[pipe.fd]
        self.inos.discard(pipe.ino)
        os.close(pipe.fd)
        self.files.release(pipe.path)
        self._send({"op": "done", "id": pipe.ino})


def _decode(data: bytes) -> dict | None:
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return message if isinstance(message, dict) else None


def _complain(message: str) -> None:
    try:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} logwriter {os.getpid()}: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _raise_nofile() -> None:
    """Two descriptors per running job: take the hard limit (the soft one jobs get is low)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def main(argv: list[str]) -> int:
    """`LISTEN_FD`: the inherited listening socket."""
    _raise_nofile()
    listener = socket.socket(fileno=int(argv[0]))
    os.set_inheritable(listener.fileno(), False)
    try:
        Writer(listener).run()
    except KeyboardInterrupt:
        return 1
    return 0
