"""Process-group leaders once started: watch, signal, reap and adopt them.

A `Proc` names one job process that leads its own process group (pgid == pid); the
group is signalled as a whole and, once the leader has exited, whatever is left of the
group is SIGKILLed before the leader is reaped, so no grandchild outlives its job.

Exits are seen through a pidfd (`Proc.pidfd`, readable once the process has exited: put
it in the daemon's selector). Where `os.pidfd_open` is missing or fails (`HAS_PIDFD`
false) `Proc.pidfd` is None and the caller calls `reap` on every live proc whenever
SIGCHLD wakes it. A process left running by a daemon that died is taken back with
`adopt(pid, ticks)`: `ticks` (the process start time from /proc/PID/stat, recorded at
spawn) guards against a pid that was reused in between, and only processes of the uids
the caller allows are taken.

Bookkeeping: `Proc` is frozen, so this module keeps a set of the procs it has handed out
and not yet closed (`_LIVE`). `reap` closes a proc (removes it and closes its pidfd) as
soon as it reports the exit, `close(proc)` does the same for a proc the caller gives up
on, and both are idempotent. A closed proc is inert: `signal_group` refuses it, so a
stale Proc can never signal a process group whose number was reused after the reap.

It decides nothing (no restarts, no timeouts, no schedules). Imports aios.errors.
"""
from __future__ import annotations

import os
import signal

from ..errors import SpawnError
from . import procfs
from .procfs import start_ticks

__all__ = ["Proc", "HAS_PIDFD", "track", "signal_group", "reap", "adopt", "alive", "close",
           "find_leaders", "start_ticks"]


class Proc:
    """One process-group leader we spawned or adopted (pgid == pid): a read-only handle.

    pidfd: readable once the process has exited (None without pidfds); start_ticks: its
    start time in clock ticks since boot (/proc/PID/stat); child: False for an adopted
    process that is not our child."""

    __slots__ = ("pid", "pidfd", "start_ticks", "child")

    def __init__(self, *, pid: int, pidfd: int | None, start_ticks: int | None, child: bool):
        for name, value in (("pid", pid), ("pidfd", pidfd), ("start_ticks", start_ticks), ("child", child)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value) -> None:
        raise AttributeError("Proc is read-only")

    def __repr__(self) -> str:
        return f"Proc(pid={self.pid}, pidfd={self.pidfd}, start_ticks={self.start_ticks}, child={self.child})"


def _probe_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


HAS_PIDFD = _probe_pidfd()

_LIVE: set = set()     # procs handed out and not yet closed
_EXITED = os.WEXITED | os.WNOHANG | os.WNOWAIT    # waitid: has it exited? (no reap)


def track(pid: int, what: str) -> Proc:
    """The Proc of a child just started; SpawnError (and the child killed and reaped) if
    it cannot be watched, e.g. no descriptor left for its pidfd."""
    pidfd = None
    try:
        step = "pidfd_open"
        pidfd = _open_pidfd(pid)
        step = f"/proc/{pid}/stat"
        ticks = start_ticks(pid)
    except OSError as e:            # a child we could not watch must not run
        _kill_leftovers(pid)
        os.waitpid(pid, 0)
        if pidfd is not None:
            os.close(pidfd)
        from .spawn import failure
        raise failure(what, e.errno, step, verb="watch") from None
    proc = Proc(pid=pid, pidfd=pidfd, start_ticks=ticks, child=True)
    _LIVE.add(proc)
    return proc


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for pid, or None without pidfd support or if pid is gone; OSError else.

    With HAS_PIDFD every proc has a pidfd, so a caller that watches pidfds alone never
    misses an exit.
    """
    if not HAS_PIDFD:
        return None
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def _same_process(proc: Proc) -> bool:
    """True while proc.pid still names the process we know (alive or a zombie)."""
    return procfs.start_ticks(proc.pid) == proc.start_ticks


# ---------------------------------------------------------------- signal


def signal_group(proc: Proc, sig: int) -> bool:
    """Send sig to proc's whole process group; False if the group is gone.

    A stopped process only sees a signal once continued, so every signal but SIGKILL
    and SIGCONT is followed by SIGCONT. An adopted proc is first checked to still be
    the process we adopted (pid reuse guard); a closed (reaped) proc is refused.
    """
    if proc not in _LIVE or (not proc.child and not _same_process(proc)):
        return False
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    if sig not in (signal.SIGKILL, signal.SIGCONT):
        try:
            os.killpg(proc.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    return True


def _kill_leftovers(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- reap


def reap(proc: Proc) -> tuple[int | None, int | None] | None:
    """(exit_code, None) or (None, signal) once proc has exited; None while it runs.

    What is left of its process group is SIGKILLed first, while the exited (zombie)
    leader still holds the pid and pgid. An adopted non-child's status is unknowable:
    its exit is reported as (None, None). The proc is closed once its exit is returned;
    reaping a closed proc returns (None, None).
    """
    if proc not in _LIVE:
        return (None, None)
    result = _reap_child(proc) if proc.child else _reap_adopted(proc)
    if result is not None:
        close(proc)
    return result


def _reap_child(proc: Proc) -> tuple[int | None, int | None] | None:
    try:
        if os.waitid(os.P_PID, proc.pid, _EXITED) is None:
            return None             # still running
        _kill_leftovers(proc.pid)   # the zombie leader still holds pid and pgid
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:       # reaped by someone else: the status is lost
        return _reap_adopted(proc)
    if pid == 0:
        return None
    if os.WIFSIGNALED(status):
        return (None, os.WTERMSIG(status))
    return (os.WEXITSTATUS(status), None)


def _reap_adopted(proc: Proc) -> tuple[None, None] | None:
    if not _has_exited(proc):
        return None
    now = start_ticks(proc.pid)
    if now is None or now == proc.start_ticks:
        # The pid is free or still ours (zombie). Had group members been left, the
        # kernel could not have reused the number, so a reused pid means none are.
        _kill_leftovers(proc.pid)
    return (None, None)


def _has_exited(proc: Proc) -> bool:
    if proc.pidfd is not None:
        return _readable(proc.pidfd)
    st = procfs.stat(proc.pid)
    return st is None or st[2] != proc.start_ticks or st[0] in ("Z", "X")


def _readable(fd: int) -> bool:
    import select
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])


def alive(proc: Proc) -> bool:
    """True while proc has not exited (nor been closed)."""
    if proc not in _LIVE:
        return False
    if proc.child:
        try:
            return os.waitid(os.P_PID, proc.pid, _EXITED) is None
        except ChildProcessError:   # reaped by someone else
            pass
    return not _has_exited(proc)


def close(proc: Proc) -> None:
    """Forget proc and close its pidfd; idempotent. A closed proc is never signalled."""
    if proc in _LIVE:
        _LIVE.discard(proc)
        if proc.pidfd is not None:
            os.close(proc.pidfd)


# ---------------------------------------------------------------- adopt


def find_leaders(marks: dict[str, str], keys: tuple[str, ...]) -> list[tuple[int, int, dict]]:
    """Live process-group leaders (pgid == pid, not zombies) of this user whose
    environment holds every NAME=VALUE of `marks`: (pid, start ticks, {key: value} for
    the `keys` they have). How a daemon finds what a dead one left running even where
    nothing recorded it (killed between a spawn and its record). Reads /proc only."""
    wanted = {f"{k}={v}".encode() for k, v in marks.items()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        env = _leader_environ(int(entry), wanted)
        if env is None or not wanted <= env[1]:
            continue
        values = {}
        for item in env[1]:
            key, _, value = item.partition(b"=")
            if key.decode(errors="replace") in keys:
                values[key.decode()] = value.decode(errors="replace")
        found.append((int(entry), env[0], values))
    return found


def _leader_environ(pid: int, wanted: set) -> tuple[int, set] | None:
    """(start ticks, set of NAME=VALUE) of a live group leader whose environment we may
    read (our own processes; every one for root) and mentions all of `wanted`, else None."""
    try:
        env = procfs.read(f"/proc/{pid}/environ", 1 << 20)
        if not all(mark in env for mark in wanted):   # first, and cheap: most processes are not ours
            return None
        data = procfs.read(f"/proc/{pid}/stat", 4096)
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X") or int(fields[2]) != pid:
            return None
        return int(fields[19]), set(env.split(b"\0"))
    except (OSError, ValueError, IndexError):
        return None


def adopt(pid: int, ticks: int) -> Proc | None:
    """Take back a process a dead daemon (or this one before a re-exec) left running, if
    pid still is that process.

    The pidfd is opened before start_ticks is compared, so the pidfd cannot refer to a
    process that took the pid over after the check.
    """
    pidfd = _open_pidfd(pid)
    st = procfs.stat(pid)
    ours = st is not None and st[1] == os.getpid()   # after a re-exec: exited or not, reap it
    if st is None or st[2] != ticks or (st[0] in ("Z", "X") and not ours):
        if pidfd is not None:
            os.close(pidfd)
        return None
    proc = Proc(pid=pid, pidfd=pidfd, start_ticks=ticks, child=ours)
    _LIVE.add(proc)
    return proc
