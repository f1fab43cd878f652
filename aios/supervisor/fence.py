"""The fence: a small process of its own that SIGKILLs a fleet job's copy at its lease
deadline unless the daemon moved the deadline on first.

A fleet job may run on one device only while that device holds its lease. The daemon
stops the copy itself in time when a renewal fails, but a daemon that is frozen (SIGSTOP,
swapped out) or dead (kill -9: its jobs keep running, by design) cannot; the fence can.
It is started by the daemon, in a session of its own (it outlives the daemon), listens on
a Unix socket of the home (mode 0600) and takes lines:

    arm KEY PID TICKS CGROUP DEADLINE MARK    SIGKILL the copy at DEADLINE (CLOCK_BOOTTIME s)
    disarm KEY                                forget it (the copy ended, or was adopted anew)

PID and TICKS name the copy's process-group leader as /proc shows it (so a reused pid is
never signalled; 0 before it is spawned); CGROUP is its cgroup ("-" for none), killed
whole where there is one; MARK is the NAME=VALUE in the environment of each of its
processes (its AIOS_RUN_TOKEN; "-" for none), by which every process of the copy the
fence may signal is killed too, also one that left the group. The daemon arms a copy by
its mark before it spawns it, then again with its pid once it runs: a daemon frozen
between the two leaves no copy unfenced.
A new daemon reconnects to the same fence and re-arms what it adopted. With nothing
armed and nobody connected for IDLE seconds, the fence exits. Server and client here;
the server imports nothing from aios beyond this package's /proc and cgroup helpers
and aios.unixsock.
"""
from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time

from ..unixsock import listen_private

IDLE = 60.0
SOCKET_NAME = "fence.sock"
_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def now() -> float:
    return time.clock_gettime(_CLOCK)


# ================================================================ the server

class Fence:
    def __init__(self, path: str):
        self.armed: dict[str, tuple] = {}    # key -> (pid, ticks, cgroup, deadline, mark)
        self.clients: dict[socket.socket, bytearray] = {}
        self.quiet_since = now()
        self.selector = selectors.DefaultSelector()
        self.listener = listen_private(path)
        self.selector.register(self.listener, selectors.EVENT_READ)

    def serve(self) -> None:
        while self.armed or self.clients or now() - self.quiet_since < IDLE:
            for key, _ in self.selector.select(self._timeout()):
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._read(key.fileobj)
            self._fire()

    def _timeout(self) -> float:
        if not self.armed:
            return IDLE
        return max(0.0, min(entry[3] for entry in self.armed.values()) - now())

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        self.clients[conn] = bytearray()
        self.selector.register(conn, selectors.EVENT_READ)

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(conn)
            conn.close()
            del self.clients[conn]
            self.quiet_since = now()
            return
        buffer = self.clients[conn]
        buffer += data
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            self.command(line.decode(errors="replace").split())
        if len(buffer) > 4096:   # a line no client of ours sends
            buffer.clear()

    def command(self, words: list[str]) -> None:
        """One `arm` or `disarm` line; anything else is ignored."""
        if len(words) == 7 and words[0] == "arm":
            try:
                pid, ticks, deadline = int(words[2]), int(words[3]), float(words[5])
            except ValueError:
                return
            self.armed[words[1]] = (pid, ticks, None if words[4] == "-" else words[4], deadline,
                                    None if words[6] == "-" else words[6].encode())
        elif len(words) == 2 and words[0] == "disarm":
            self.armed.pop(words[1], None)

    def _fire(self) -> None:
        moment = now()
        for key, (pid, ticks, cgroup_path, deadline, mark) in list(self.armed.items()):
            if deadline <= moment:
                del self.armed[key]
                kill_copy(pid, ticks, cgroup_path, mark)


def kill_copy(pid: int, ticks: int, cgroup_path: str | None, mark: bytes | None = None) -> None:
    """SIGKILL a copy: its cgroup whole, else its process group if pid still is it; and
    every process carrying its mark."""
    from . import cgroup, procfs

    if cgroup_path is not None:
        try:
            cgroup.kill(cgroup_path)
        except OSError:         # gone already
            pass
    elif pid > 0 and (stat := procfs.stat(pid)) is not None and stat.ticks == ticks:
        _kill(os.killpg, pid)
    if mark is not None:
        for marked in _carrying(mark):
            _kill(os.kill, marked)


def _carrying(mark: bytes) -> list[int]:
    """The processes whose environment holds mark (those whose environment we may read)."""
    from . import procfs

    me = os.getpid()
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != me
            and mark in (procfs.environ(int(name)) or b"").split(b"\0")]


def _kill(how, pid: int) -> None:
    try:
        how(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str]) -> int:
    """`python -m aios.supervisor.fence SOCKET`: serve until idle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)     # the daemon's Ctrl-C is not the fence's end
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    Fence(argv[0]).serve()
    return 0


# ================================================================ the daemon's side

class FenceClient:
    """The daemon's line to its home's fence: started on first use, reconnected when
    lost; every send is a short line on a blocking socket (the fence reads at once)."""

    def __init__(self, home: str, spawn):
        self.path = os.path.join(home, SOCKET_NAME)
        self.spawn = spawn            # spawn(argv) -> None: start the fence process
        self.sock: socket.socket | None = None

    def arm(self, key: str, pid: int, ticks: int, cgroup_path: str | None, deadline: float,
            mark: str | None) -> None:
        self._send(f"arm {key} {pid} {ticks} {cgroup_path or '-'} {deadline:.3f} {mark or '-'}\n")

    def disarm(self, key: str) -> None:
        self._send(f"disarm {key}\n")

    def _send(self, line: str) -> None:
        try:
            self._connected().sendall(line.encode())
        except OSError:   # a fence that died: the next send starts another
            self.close()
            raise OSError(f"the fence at {self.path} cannot be reached") from None

    def start(self) -> None:
        """Connect to this home's fence, starting one if none listens (and waiting up to a
        second for it to listen): call before the first copy runs, so arming one is quick."""
        if self.sock is not None or self._try_connect():
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.spawn([sys.executable, "-m", "aios.supervisor.fence", self.path])
        _wait_for(self.path)
        if not self._try_connect():
            raise OSError(f"no fence listens at {self.path}")

    def _try_connect(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2.0)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            return False
        self.sock = sock
        return True

    def _connected(self) -> socket.socket:
        if self.sock is None:
            self.start()
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _wait_for(path: str, patience: float = 1.0) -> None:
    deadline = now() + patience
    while not os.path.exists(path) and now() < deadline:
        time.sleep(0.005)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
