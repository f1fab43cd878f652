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

from ..record import record
from . import cgroup, orphans, procfs
from .procfs import start_ticks

__all__ = ["Proc", "HAS_PIDFD", "Leader", "track", "signal_group", "reap", "adopt", "alive", "close",
           "leaders", "start_ticks", "oom_killed"]


class Proc:
    """One process-group leader we spawned or adopted (pgid == pid): a read-only handle.

    pidfd: readable once the process has exited (None without pidfds); start_ticks: its
    start time in clock ticks since boot (/proc/PID/stat); child: False for an adopted
    process that is not our child; cgroup: the run's own cgroup (None without cgroup
    containment); mark: the NAME=VALUE of its environment that marks the run's processes
    (its AIOS_RUN_TOKEN), to find those that left the process group; ended: what was
    learnt when it was reaped (oom_kills)."""

    __slots__ = ("pid", "pidfd", "start_ticks", "child", "cgroup", "mark", "ended")

    def __init__(self, *, pid: int, pidfd: int | None, start_ticks: int | None, child: bool,
                 cgroup: str | None = None, mark: bytes | None = None):
        for name, value in (("pid", pid), ("pidfd", pidfd), ("start_ticks", start_ticks), ("child", child),
                            ("cgroup", cgroup), ("mark", mark), ("ended", {})):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value) -> None:
        raise AttributeError("Proc is read-only")

    def __repr__(self) -> str:
        return (f"Proc(pid={self.pid}, pidfd={self.pidfd}, start_ticks={self.start_ticks}, child={self.child}, "
                f"cgroup={self.cgroup!r})")


def _probe_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


HAS_PIDFD = _probe_pidfd()

_LIVE: set = set()     # procs handed out and not yet closed
_EXITED = os.WEXITED | os.WNOHANG | os.WNOWAIT    # waitid: has it exited? (no reap)


def track(pid: int, what: str, cgroup_path: str | None = None, mark: bytes | None = None) -> Proc:
    """The Proc of a child just started; SpawnError (and the child killed and reaped) if
    it cannot be watched, e.g. no descriptor left for its pidfd."""
    pidfd = None
    try:
        step = "pidfd_open"
        pidfd = _open_pidfd(pid)
        step = f"/proc/{pid}/stat"
        ticks = start_ticks(pid)
    except OSError as e:            # a child we could not watch must not run
        try:
            _kill_group(pid, cgroup_path, None)
        except OSError:             # no descriptor for cgroup.kill either: its group has its SIGKILL
            pass
        os.waitpid(pid, 0)
        if pidfd is not None:
            os.close(pidfd)
        if cgroup_path is not None:
            cgroup.remove(cgroup_path)
        from .spawn import failure
        raise failure(what, e.errno, step, verb="watch") from None
    proc = Proc(pid=pid, pidfd=pidfd, start_ticks=ticks, child=True, cgroup=cgroup_path, mark=mark)
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
    """Send sig to proc's whole process group, and to the processes of the run that left
    it (in its cgroup, or found by orphans.escaped); False if the group is gone.

    A stopped process only sees a signal once continued, so every signal but SIGKILL
    and SIGCONT is followed by SIGCONT. An adopted proc is first checked to still be
    the process we adopted (pid reuse guard); a closed (reaped) proc is refused.
    """
    if proc not in _LIVE or (not proc.child and not _same_process(proc)):
        return False
    if sig == signal.SIGKILL:
        return _kill_group(proc.pid, proc.cgroup, proc.mark)
    escaped = _escaped(proc)        # first: once the leader dies, its children move away
    sent = _send(-proc.pid, sig)
    for pid in escaped:
        _send(pid, sig)
        if sig != signal.SIGCONT:
            _send(pid, signal.SIGCONT)
    if sig != signal.SIGCONT:
        _send(-proc.pid, signal.SIGCONT)
    return sent


def _escaped(proc: Proc) -> list[int]:
    if proc.cgroup is not None:
        return [pid for pid in cgroup.pids(proc.cgroup) if _pgid(pid) not in (proc.pid, None)]
    return orphans.escaped(proc.pid, proc.pid, proc.mark, {p.pid for p in _LIVE})


def _kill_group(pgid: int, cgroup_path: str | None, mark: bytes | None) -> bool:
    """SIGKILL the group and whatever of the run left it; False if the group was gone."""
    escaped = [] if cgroup_path is not None else orphans.escaped(pgid, pgid, mark, {p.pid for p in _LIVE})
    sent = _send(-pgid, signal.SIGKILL)
    if cgroup_path is not None:
        cgroup.kill(cgroup_path)
    for pid in escaped:
        _send(pid, signal.SIGKILL)
    return sent


def _send(pid: int, sig: int) -> bool:
    """kill(pid, sig) (a negative pid: a group); False if nothing is there."""
    try:
        os.kill(pid, sig) if pid > 0 else os.killpg(-pid, sig)
    except ProcessLookupError:
        return False
    return True


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


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
        _kill_group(proc.pid, proc.cgroup, proc.mark)   # the zombie leader still holds pid and pgid
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
    except ChildProcessError:       # reaped by someone else: the status is lost
        return _reap_adopted(proc)
    if pid == 0:
        return None
    _release(proc)
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
        _kill_group(proc.pid, proc.cgroup, proc.mark)
    elif proc.cgroup is not None:
        cgroup.kill(proc.cgroup)
    _release(proc)
    return (None, None)


def _release(proc: Proc) -> None:
    """Once the leader is reaped: note the run's OOM kills, remove its cgroup (later, if
    it still empties)."""
    if proc.cgroup is not None:
        proc.ended["oom_kills"] = cgroup.oom_kills(proc.cgroup)
        cgroup.remove(proc.cgroup)
    cgroup.sweep()


def oom_killed(proc: Proc) -> bool:
    """After reap: True if the kernel killed a process of the run for its memory_max
    (cgroup memory.events); always False without a cgroup memory controller."""
    return proc.ended.get("oom_kills", 0) > 0


def _has_exited(proc: Proc) -> bool:
    if proc.pidfd is not None:
        return _readable(proc.pidfd)
    st = procfs.stat(proc.pid)
    return st is None or st.ticks != proc.start_ticks or st.exited


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


@record
class Leader:
    """A live process-group leader found by its environment."""

    pid: int
    ticks: int          # start time, as adopt() wants it
    uid: int            # real uid
    env: dict           # the requested NAME: value pairs it has


def leaders(marks: dict[str, str], keys: tuple[str, ...], uids) -> list[Leader]:
    """Live process-group leaders (pgid == pid, not zombies) whose real uid is in `uids`
    and whose environment holds every NAME=VALUE of `marks`, with the values of `keys`
    they have. How a daemon finds what a dead one left running even where nothing
    recorded it (killed between a spawn and its record). Environment variables are set
    by whoever starts a process: pass the uids jobs run as (the daemon's, the jobs'
    configured users) and check a secret among `keys` (AIOS_RUN_TOKEN). Reads /proc only."""
    wanted = [f"{k}={v}".encode() for k, v in marks.items()]
    allowed = set(uids)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            leader = _leader(int(entry), wanted, keys, allowed)
            if leader is not None:
                found.append(leader)
    return found


def _leader(pid: int, wanted: list, keys: tuple, uids: set) -> Leader | None:
    env = procfs.environ(pid)       # first, and cheap: most processes are not ours
    if env is None or not all(mark in env for mark in wanted):
        return None
    entries = env.split(b"\0")
    if not set(wanted) <= set(entries):
        return None
    st, uid = procfs.stat(pid), procfs.real_uid(pid)
    if st is None or st.exited or st.pgrp != pid or uid not in uids:
        return None
    values = {}
    for item in entries:
        key, _, value = item.partition(b"=")
        name = key.decode(errors="replace")
        if name in keys:
            values[name] = value.decode(errors="replace")
    return Leader(pid=pid, ticks=st.ticks, uid=uid, env=values)


def adopt(pid: int, ticks: int, *, uids=None, mark: str | None = None) -> Proc | None:
    """Take back a process a dead daemon (or this one before a re-exec) left running, if
    pid still is that process: the same start time, a real uid in `uids` (default: the
    daemon's own) and, if given, `mark` (NAME=VALUE, the run's AIOS_RUN_TOKEN) in its
    environment: start times repeat across reboots, a per-run secret does not.

    The pidfd is opened before the process is checked, so the pidfd cannot refer to a
    process that took the pid over after the check.
    """
    pidfd = _open_pidfd(pid)
    st = procfs.stat(pid)
    mark_bytes = None if mark is None else os.fsencode(mark)
    # Our own child (after a re-exec) is ours whatever it became: exited or not, reap it.
    ours = st is not None and st.ppid == os.getpid()
    if not (st is not None and st.ticks == ticks
            and (ours or (not st.exited and _owned(pid, uids) and _marked(pid, mark_bytes)))):
        if pidfd is not None:
            os.close(pidfd)
        return None
    proc = Proc(pid=pid, pidfd=pidfd, start_ticks=ticks, child=ours, cgroup=cgroup.of(pid), mark=mark_bytes)
    _LIVE.add(proc)
    return proc


def _owned(pid: int, uids) -> bool:
    return procfs.real_uid(pid) in (set(uids) if uids is not None else {os.getuid()})


def _marked(pid: int, mark: bytes | None) -> bool:
    return mark is None or mark in (procfs.environ(pid) or b"").split(b"\0")
