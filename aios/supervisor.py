"""Processes, and nothing else: spawn, signal, reap and adopt process groups.

Every job runs as the leader of its own process group (pgid = pid), with stdin on
/dev/null and stdout and stderr on the job's log fd. A `Proc` names one such leader;
the group is signalled as a whole and, once the leader has exited, whatever is left of
the group is SIGKILLed before the leader is reaped, so no grandchild outlives its job.

Exits are seen through a pidfd (`Proc.pidfd`, readable once the process has exited: put
it in the daemon's selector). Where `os.pidfd_open` is missing or fails (`HAS_PIDFD`
false) `Proc.pidfd` is None and the caller calls `reap` on every live proc whenever
SIGCHLD wakes it. A process left running by a daemon that died is taken back with
`adopt(pid, ticks)`: `ticks` (the process start time from /proc/PID/stat, recorded at
spawn) guards against a pid that was reused in between.

Bookkeeping: `Proc` is frozen, so this module keeps a set of the procs it has handed out
and not yet closed (`_LIVE`). `reap` closes a proc (removes it and closes its pidfd) as
soon as it reports the exit, `close(proc)` does the same for a proc the caller gives up
on, and both are idempotent. A closed proc is inert: `signal_group` refuses it, so a
stale Proc can never signal a process group whose number was reused after the reap.

It decides nothing (no restarts, no timeouts, no schedules) and imports nothing from aios.
"""
from __future__ import annotations

import errno
import os
import signal

__all__ = [
    "Proc", "HAS_PIDFD", "spawn", "start_ticks", "signal_group", "reap", "adopt",
    "alive", "close", "find_leaders",
]


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
# Reset in the child: every catchable standard signal, whatever the daemon (or Python:
# SIGPIPE, SIGXFSZ ignored, SIGINT handled) did with it.
_SIGDEF = tuple(int(s) for s in signal.Signals
                if int(s) < 32 and s not in (signal.SIGKILL, signal.SIGSTOP))
_EXITED = os.WEXITED | os.WNOHANG | os.WNOWAIT    # waitid: has it exited? (no reap)


# ---------------------------------------------------------------- /proc


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start_ticks) of pid from /proc/PID/stat, or None if it is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        data = os.read(fd, 4096)
    except ProcessLookupError:      # exited and reaped between open and read
        return None
    finally:
        os.close(fd)
    if not data:
        return None
    # comm (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if pid is gone."""
    st = _stat(pid)
    return None if st is None else st[2]


def live_start_ticks(pid: int) -> int | None:
    """start_ticks of a live process; None if pid is gone or a zombie (it has exited)."""
    st = _stat(pid)
    return None if st is None or st[0] in ("Z", "X") else st[2]


def _same_process(proc: Proc) -> bool:
    """True while proc.pid still names the process we know (alive or a zombie)."""
    st = _stat(proc.pid)
    return st is not None and st[2] == proc.start_ticks


# ---------------------------------------------------------------- spawn


def spawn(argv: list[str], env: dict[str, str], cwd: str, log_fd: int) -> Proc:
    """Start argv as the leader of a new process group; raise OSError naming argv[0].

    stdin is /dev/null, stdout and stderr go to log_fd, every signal disposition is the
    default and the signal mask is empty. argv[0] without a slash is looked up in
    env["PATH"] (as a shell started with that environment would).
    """
    if not argv:
        raise OSError(f"cannot start an empty command (cwd {cwd!r})")
    prev = _enter(cwd, argv)
    try:
        pid = _posix_spawn(argv, env, log_fd)
    finally:
        if prev is not None:
            os.chdir(prev)
    return _track(pid, argv[0])


def _enter(cwd: str, argv: list[str]) -> str | None:
    """chdir to cwd (posix_spawn has no cwd option); return the directory to go back to."""
    try:
        prev = os.getcwd()
    except FileNotFoundError:       # our own cwd was removed: nothing to go back to
        prev = None
    if cwd == prev:
        return None
    try:
        os.chdir(cwd)
    except OSError as e:
        raise OSError(e.errno, f"cannot start {argv[0]!r}: cwd {cwd!r}: {e.strerror}") from None
    return prev


def _posix_spawn(argv: list[str], env: dict[str, str], log_fd: int) -> int:
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log_fd, 1),
        (os.POSIX_SPAWN_DUP2, log_fd, 2),
    ]
    program = _lookup(argv[0], env)
    try:
        return os.posix_spawnp(
            program, argv, env, file_actions=actions,
            setpgroup=0, setsigdef=_SIGDEF, setsigmask=(),
        )
    except OSError as e:            # glibc has already reaped the failed child
        raise OSError(e.errno, f"cannot start {argv[0]!r}: {e.strerror}") from None


def _lookup(program: str, env: dict[str, str]) -> str:
    """program as posix_spawnp should see it: resolved in env's PATH if that differs."""
    path = env.get("PATH")
    if "/" in program or path is None or path == os.environ.get("PATH"):
        return program              # posix_spawnp searches the daemon's own PATH
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise OSError(errno.ENOENT, f"cannot start {program!r}: not in the job's PATH {path!r}")


def _track(pid: int, program: str) -> Proc:
    try:
        pidfd = _open_pidfd(pid)
    except OSError as e:            # e.g. EMFILE: a child we could not watch must not run
        _kill_leftovers(pid)
        os.waitpid(pid, 0)
        raise OSError(e.errno, f"cannot watch {program!r}: pidfd_open: {e.strerror}") from None
    proc = Proc(pid=pid, pidfd=pidfd, start_ticks=start_ticks(pid), child=True)
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
    st = _stat(proc.pid)
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
        env = _read_proc(f"/proc/{pid}/environ", 1 << 20)
        if not all(mark in env for mark in wanted):   # first, and cheap: most processes are not ours
            return None
        data = _read_proc(f"/proc/{pid}/stat", 4096)
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X") or int(fields[2]) != pid:
            return None
        return int(fields[19]), set(env.split(b"\0"))
    except (OSError, ValueError, IndexError):
        return None


def _read_proc(path: str, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def adopt(pid: int, ticks: int) -> Proc | None:
    """Take back a process a dead daemon (or this one before a re-exec) left running, if
    pid still is that process.

    The pidfd is opened before start_ticks is compared, so the pidfd cannot refer to a
    process that took the pid over after the check.
    """
    pidfd = _open_pidfd(pid)
    st = _stat(pid)
    ours = st is not None and st[1] == os.getpid()   # after a re-exec: exited or not, reap it
    if st is None or st[2] != ticks or (st[0] in ("Z", "X") and not ours):
        if pidfd is not None:
            os.close(pidfd)
        return None
    proc = Proc(pid=pid, pidfd=pidfd, start_ticks=ticks, child=ours)
    _LIVE.add(proc)
    return proc
