"""The daemon's side of the log writer (aios/logwriter.py, whose docstring says why it is
a process of its own and what the two say to each other).

`LogPipes` finds the writer the last daemon left (`find`, at start), or starts one when a
job first needs it; makes each job's stdout and stderr pipes and hands their read ends to
the writer (`open`); and keeps a copy of every read end, never reading it, until the
writer says that pipe is done, so that a job never loses its pipe's reader while the
writer is restarted. When the connection ends it first reaches the writer again through
its socket (a writer that dropped a daemon slow to read keeps its pipes and its socket:
a pipe never gets a second reader), then asks it which pipes it reads and hands it again
those it lacks; only when no writer answers does it start a new one and hand it every end
it holds. A writer that keeps failing is reached again after RESTART_DELAYS; meanwhile
`open` returns None and jobs write their log files directly, unstamped. Nothing here
blocks the loop: messages the socket cannot take yet wait in `outbox` until it is
writable. Part of the engine.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections import deque
from pathlib import Path

from .. import logs, supervisor
from ..unixsock import listen_private, peer_uid

SOCKET_NAME = "logwriter.sock"     # = logwriter.SOCKET_NAME (the writer is not imported here)
RESTART_DELAYS = (0.0, 1.0, 5.0, 30.0)  # a writer that keeps dying is started again after these
STABLE = 10.0                      # a writer that lived this long was not failing
FINISH_WAIT = 2.0                  # at exit, how long the daemon waits for the jobs' last lines
MESSAGE_MAX = 8192
_ROOT = str(Path(__file__).resolve().parents[2])       # the folder that holds the aios package
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); from aios.logwriter import main; "
         "sys.exit(main(sys.argv[2:]))")
_WRITER_ENV = ("PATH", "TZ", "LANG", "LC_ALL")            # TZ: the writer's local time is the daemon's


class Held:
    """A pipe's read end the daemon keeps, and what the writer needs to know of it."""

    __slots__ = ("fd", "ino", "path", "stream", "format")

    def __init__(self, fd: int, ino: int, path: str, stream: str, fmt: str):
        self.fd, self.ino, self.path, self.stream, self.format = fd, ino, path, stream, fmt

    def add(self) -> bytes:
        return _encode({"op": "add", "path": self.path, "stream": self.stream, "format": self.format})


class LogPipes:
    def __init__(self, home, loop, report, env: dict | None = None):
        self.home, self.loop, self.report = Path(home), loop, report
        self.path = str(self.home / SOCKET_NAME)
        self.env = {k: v for k, v in (os.environ if env is None else env).items() if k in _WRITER_ENV}
        self.held: dict[int, Held] = {}          # pipe inode -> its read end
        self.outbox: deque = deque()             # (message, fd or None) the socket has not taken yet
        self.link: socket.socket | None = None
        self.child = None                        # supervisor.Proc of a writer this daemon started
        self.listing: set | None = None          # pipes held when `list` was sent, not yet listed back
        self.wanted = False                      # keep a writer while no pipe is open (stamps are on)
        self.failures, self.retry_at, self.linked_at = 0, 0.0, 0.0
        self.finishing = False

    # ---------------------------------------------------------------- what the daemon calls
    def find(self) -> bool:
        """At start: take over the writer the last daemon left, if one answers, and a copy
        of every read end it holds. False if there is none."""
        try:
            conn = _connect(self.path)
        except OSError:
            return False
        if peer_uid(conn) != os.getuid():      # its listener's maker: never hand a job's output to another user
            conn.close()
            return False
        self._linked(conn)
        self._list()
        return True

    def open(self, path: str, fmt: str) -> tuple[int, int] | None:
        """The write ends (stdout, stderr) of two new pipes whose lines the writer stamps in
        fmt into the log file `path`: give them to the job, then close them. None when no
        writer can be had now (the job then writes its log file directly); OSError if no
        pipe can be made (no descriptors left)."""
        if self.link is None and not self._reach():
            return None
        ends: list[int] = []
        try:
            for stream in ("stdout", "stderr"):
                read_end, write_end = os.pipe2(os.O_CLOEXEC)
                ends.append(write_end)
                held = Held(read_end, os.fstat(read_end).st_ino, path, stream, fmt)
                self.held[held.ino] = held
                self._queue(held.add(), held.fd)
        except OSError:
            for fd in ends:
                os.close(fd)
            raise
        return ends[0], ends[1]

    def before_exec(self, timeout: float = 1.0) -> None:
        """Before the daemon re-executes itself: every read end it still has to hand over
        is in the writer's socket (exec closes the daemon's copies)."""
        if self.link is not None and self.outbox:
            self.finishing = True
            self.link.settimeout(timeout)
            self._flush()

    def finish(self, timeout: float = FINISH_WAIT) -> None:
        """At the daemon's exit: wait, at most `timeout`, until the writer has written what
        the jobs left in their pipes; then let go (the writer exits once its pipes are done;
        one this daemon started is reaped if it does so in time)."""
        import select

        self.finishing = True
        deadline = time.monotonic() + timeout
        if self.link is not None:
            self.link.settimeout(timeout)
            self._flush()
        if self.link is not None:
            self.link.setblocking(False)
        while self.held and self.link is not None and time.monotonic() < deadline:
            if select.select([self.link], [], [], deadline - time.monotonic())[0]:
                self._receive()
        self._unlink()
        for held in self.held.values():
            os.close(held.fd)
        self.held.clear()
        if self.child is not None:
            self._reap_in_time(self.child, deadline)

    # ---------------------------------------------------------------- the writer's process
    def _reach(self) -> bool:
        """Link to the writer: the one listening on our socket (one that dropped us, slow to
        read, still has its pipes: never a second reader of them), else a new one. False
        while a writer that keeps failing waits for its next try."""
        if self.finishing or self.loop.boot < self.retry_at:
            return False
        if self.find():
            return True
        return self._start()

    def _start(self) -> bool:
        """Start a writer on a fresh socket and link to it; False (and a retry planned) if
        it cannot be started."""
        listener = conn = None
        try:
            listener = listen_private(self.path, socket.SOCK_SEQPACKET, 8)   # in place of a dead writer's
            conn = _connect(self.path)        # waits in the backlog for the writer
            self.child = self._spawn(listener.fileno())
        except OSError as exc:
            if conn is not None:
                conn.close()
            self._retry_later(f"could not be started ({exc})")
            return False
        finally:
            if listener is not None:
                listener.close()
        if self.child.pidfd is not None:
            self.loop.add_reader(self.child.pidfd, self._exited, self.child)
        self._linked(conn)
        for held in self.held.values():         # a new writer takes every pipe the last one read
            self._queue(held.add(), held.fd)
        return True

    def _spawn(self, listen_fd: int):
        log_fd = logs.open_log(str(self.home / "orchestrator.log"))
        os.set_inheritable(listen_fd, True)
        try:
            argv = [sys.executable, "-S", "-c", _BOOT, _ROOT, str(listen_fd)]
            return supervisor.spawn(argv, self.env, "/", log_fd, unit="logwriter")
        finally:
            os.set_inheritable(listen_fd, False)
            os.close(log_fd)

    def _exited(self, proc) -> None:
        """A writer this daemon started exited (its connection tells the rest): reap it."""
        self.loop.remove_reader(proc.pidfd)
        supervisor.reap(proc)
        if proc is self.child:
            self.child = None

    def _linked(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        self.link, self.linked_at = conn, self.loop.boot
        self.loop.add_reader(conn.fileno(), self._receive)

    def _lost(self, why: str) -> None:
        """The connection ended: the writer exited, or dropped us. Reach it or another."""
        self._unlink()
        if self.finishing:
            return
        if self.loop.boot - self.linked_at >= STABLE:
            self.failures = 0
        self._retry_later(why)

    def _retry_later(self, why: str) -> None:
        delay = RESTART_DELAYS[min(self.failures, len(RESTART_DELAYS) - 1)]
        self.failures += 1
        self.retry_at = self.loop.boot + delay
        if not (self.held or self.wanted):
            return
        self.report("log_writer_lost", f"the log writer {why}; reaching it or starting another in {delay:g} s"
                    f" ({len(self.held)} pipe(s) held meanwhile; jobs started meanwhile log unstamped)")
        if delay:
            self.loop.call_later(delay, self._restart)
        else:
            self._restart()

    def _restart(self) -> None:
        if self.link is None and (self.held or self.wanted):
            self._reach()

    def _reap_in_time(self, proc, deadline: float) -> None:
        import select

        if proc.pidfd is not None:
            self.loop.remove_reader(proc.pidfd)
            if not self.held:
                select.select([proc.pidfd], [], [], max(0.0, deadline - time.monotonic()))
        if supervisor.reap(proc) is None:
            supervisor.close(proc)               # still writing: it carries on without us

    # ---------------------------------------------------------------- the socket
    def _list(self) -> None:
        self.listing = set(self.held)
        self._queue(_encode({"op": "list"}))

    def _queue(self, message: bytes, fd: int | None = None) -> None:
        self.outbox.append((message, fd))
        if len(self.outbox) == 1:
            self._flush()

    def _flush(self) -> None:
        while self.outbox and self.link is not None:
            message, fd = self.outbox[0]
            try:
                if fd is None:
                    self.link.sendmsg([message])
                else:
                    socket.send_fds(self.link, [message], [fd])
            except (BlockingIOError, socket.timeout):
                if not self.finishing:
                    self.loop.add_writer(self.link.fileno(), self._flush)
                return
            except OSError as exc:
                return self._lost(f"stopped taking messages ({exc.strerror})")
            self.outbox.popleft()
        if self.link is not None and not self.finishing:
            self.loop.remove_writer(self.link.fileno())
        return None

    def _receive(self) -> None:
        for _ in range(64):                     # then let the loop serve others
            try:
                data, fds, _flags, _ = socket.recv_fds(self.link, MESSAGE_MAX, 1)
            except (BlockingIOError, socket.timeout):
                return
            except OSError as exc:
                return self._lost(f"connection failed ({exc.strerror})")
            if not data and not fds:
                return self._lost("closed its connection")
            self._handle(_decode(data), fds)
            if self.link is None:
                return
        return None

    def _handle(self, message: dict, fds: list) -> None:
        op, ino = message.get("op"), message.get("id")
        if op == "done" and ino in self.held:
            os.close(self.held.pop(ino).fd)
            if not self.held and not self.wanted and not self.finishing:
                self._unlink()                  # nothing to read and nothing to stamp: let it exit
        elif op == "pipe" and len(fds) == 1 and isinstance(ino, int):
            if self.listing is not None:
                self.listing.discard(ino)
            if ino not in self.held:
                self.held[ino] = Held(fds.pop(), ino, str(message.get("path")), str(message.get("stream")),
                                      str(message.get("format")))
        elif op == "listed" and self.listing is not None:
            for lost in self.listing & set(self.held):   # sent to a connection it dropped: again
                self._queue(self.held[lost].add(), self.held[lost].fd)
            self.listing = None
        for fd in fds:
            os.close(fd)

    def _unlink(self) -> None:
        if self.link is None:
            return
        self.loop.remove_reader(self.link.fileno())
        self.loop.remove_writer(self.link.fileno())
        self.link.close()
        self.link = None
        self.outbox.clear()
        self.listing = None


def _connect(path: str) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        raise
    return conn


def _encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _decode(data: bytes) -> dict:
    try:
        message = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return message if isinstance(message, dict) else {}
