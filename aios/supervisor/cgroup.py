"""cgroup v2 containment: each run in a cgroup of its own, stopped as a whole.

A process can leave its process group (setsid) but not its cgroup, so where the daemon
may manage a cgroup subtree every run gets one, SCOPE/UNIT.N under the daemon's own
cgroup, and stopping it (cgroup.kill, kernel 5.14+) stops every process in it, as
systemd does. Detected at run time, never assumed: a cgroup2 mount
(/proc/self/mountinfo), the daemon's cgroup (/proc/self/cgroup), and the right to
create SCOPE there and to move ourselves between it and our own cgroup (root, or a
subtree delegated to our user, e.g. systemd's Delegate=yes). Otherwise `setup` returns
None and containment falls back to process groups and the subreaper (orphans.py).

A child is placed in its cgroup from its first instruction, without a window in which
it could fork outside it: the daemon moves itself into the run's cgroup, starts the
child (which inherits it), and moves back, about 0.02 ms per spawn in a burst. A move
after a quiet spell costs more, as the kernel waits out an RCU grace period (8-16 ms
measured on Linux 6.18, unless cgroup2 is mounted with favordynmods): so the trial move
that tells setup we may move is made early, in a thread (`probe`, as the daemon opens),
and that wait overlaps the daemon's own start instead of delaying its first job.

Limits are written to the run's cgroup before it starts, for the controllers the
subtree offers. A run's cgroup is removed once empty; one still busy when its leader is
reaped is removed later (`sweep`). Imports aios.record and limits.py.
"""
from __future__ import annotations

import errno
import os

from ..record import record
from . import limits

__all__ = ["Tree", "TREE", "probe", "setup", "teardown", "create", "limit", "enter", "leave", "kill", "pids", "remove",
           "sweep", "of", "oom_kills"]


@record
class Tree:
    """Where runs' cgroups live: `scope` inside the daemon's own cgroup `base`."""

    mount: str                  # where cgroup2 is mounted
    base: str
    scope: str
    controllers: frozenset      # what runs' cgroups may limit: memory, cpu, io, pids


TREE: Tree | None = None        # set by setup: cgroup containment is in use
_PENDING: set = set()           # emptied runs' cgroups not removed yet (still dying processes)
_PROBE: dict = {}               # the early move `probe` began: its lock, released when done, and error


def setup(name: str) -> Tree | None:
    """Use cgroups from now on, for runs in `name` inside our cgroup, if cgroup v2 is
    mounted and we may manage it; None (and no cgroups) otherwise. Empty cgroups left
    there by an earlier daemon are removed."""
    global TREE
    mount, own = _mount(), _own_cgroup()
    if mount is None or own is None:
        return None
    base = os.path.normpath(mount + own)
    scope = os.path.join(base, name)
    try:
        os.makedirs(scope, mode=0o755, exist_ok=True)
        if not os.path.exists(os.path.join(scope, "cgroup.kill")):
            return None             # kernel before 5.14: no atomic stop
    except OSError:
        return None
    if not (_may_move(base) and os.access(os.path.join(scope, "cgroup.procs"), os.W_OK)):
        return None                 # we may not move ourselves there and back
    TREE = Tree(mount=mount, base=base, scope=scope, controllers=_enable(base, scope))
    for entry in os.listdir(scope):
        if os.path.isdir(os.path.join(scope, entry)):
            remove(os.path.join(scope, entry))
    return TREE


def probe() -> None:
    """Begin now, in a thread of its own, the no-op move into our own cgroup by which
    setup learns that we may move: the first move waits out an RCU grace period (see
    the module), and begun early it overlaps the daemon's loading of its configuration
    and store; the first spawns then find the kernel ready. setup waits for its end."""
    import _thread

    mount, own = _mount(), _own_cgroup()
    if mount is None or own is None or _PROBE:
        return
    done = _thread.allocate_lock()
    done.acquire()
    _PROBE.update(done=done, error=None)

    def move() -> None:
        try:
            _PROBE["error"] = _trial_move(os.path.normpath(mount + own))
        finally:
            done.release()

    _thread.start_new_thread(move, ())


def _may_move(base: str) -> bool:
    """Whether we may move ourselves into base (our own cgroup): what `probe` found, else
    a move now."""
    done = _PROBE.get("done")
    if done is None:
        return _trial_move(base) is None
    done.acquire()
    error = _PROBE["error"]
    _PROBE.clear()
    return error is None


def _trial_move(base: str) -> OSError | None:
    """Move ourselves into base, where we are (a no-op move): the error if we may not."""
    try:
        _write(os.path.join(base, "cgroup.procs"), "0")
    except OSError as exc:
        return exc
    return None


def _mount() -> str | None:
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                dash = fields.index(b"-")
                if fields[dash + 1] == b"cgroup2" and fields[3] == b"/":
                    return os.fsdecode(fields[4])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_cgroup() -> str | None:
    try:
        with open("/proc/self/cgroup", "rb") as f:
            for line in f:
                if line.startswith(b"0::"):
                    return os.fsdecode(line[3:].strip())
    except OSError:
        return None
    return None


def _enable(base: str, scope: str) -> frozenset:
    """Turn on for scope's children what the subtree offers (needs base to pass them on:
    the root cgroup does; a cgroup holding processes other than its root cannot)."""
    wanted = {"memory", "cpu", "io", "pids"}
    for parent in (base, scope):
        offered = set(_read(os.path.join(parent, "cgroup.controllers")).split()) & wanted
        for controller in offered:
            try:
                _write(os.path.join(parent, "cgroup.subtree_control"), f"+{controller}")
            except OSError:
                pass
    return frozenset(set(_read(os.path.join(scope, "cgroup.subtree_control")).split()) & wanted)


# ---------------------------------------------------------------- one run


def create(unit: str, limits: dict | None = None) -> str:
    """A new empty cgroup for one run of `unit`, with its limits (file name -> value,
    e.g. {"memory.max": "104857600"}) written; OSError if it cannot be made."""
    for n in range(1, 10_000):
        path = os.path.join(TREE.scope, f"{unit}.{n}")
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            continue
        try:
            limit(path, limits)
        except OSError:
            remove(path)
            raise
        return path
    raise OSError(errno.EEXIST, f"no free cgroup name for {unit!r} in {TREE.scope}")


def limit(path: str, limits: dict | None) -> None:
    """Write a run's limits (file name -> value) into its cgroup; OSError if one cannot be."""
    for name, value in (limits or {}).items():
        _write(os.path.join(path, name), value)


def enter(path: str) -> None:
    """Move the daemon itself into path: what it starts now begins there."""
    _write(os.path.join(path, "cgroup.procs"), "0")


def leave() -> None:
    """Move the daemon back into its own cgroup."""
    _write(os.path.join(TREE.base, "cgroup.procs"), "0")


def kill(path: str) -> None:
    """SIGKILL every process in path at once. Never with the daemon inside (had a move
    back after a spawn failed): it leaves first, or the cgroup is not killed."""
    if os.getpid() in pids(path):
        try:
            leave()
        except OSError:
            return
    try:
        _write(os.path.join(path, "cgroup.kill"), "1")
    except FileNotFoundError:
        pass


def pids(path: str) -> list[int]:
    """The processes in path (none once it is gone)."""
    return [int(p) for p in _read(os.path.join(path, "cgroup.procs")).split()]


def remove(path: str) -> bool:
    """rmdir path; if processes still die in it, keep it for `sweep`. True once gone."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        _PENDING.add(path)
        return False
    _PENDING.discard(path)
    return True


def oom_kills(path: str) -> int:
    """How many processes of path the kernel killed for its memory.max (none without the
    memory controller, which keeps that count)."""
    if TREE is None or "memory" not in TREE.controllers:
        return 0
    return limits.oom_kills(_read(os.path.join(path, "memory.events")))


def teardown() -> None:
    """No cgroups for runs from now on: the daemon ends inside a longer-lived process (a
    test) or the home goes. Its scope is removed if no run is left in it."""
    global TREE
    if TREE is None:
        return
    sweep()
    try:
        os.rmdir(TREE.scope)
    except OSError:   # runs still in it (adopted by the next daemon), or already gone
        pass
    TREE = None


def sweep() -> None:
    """Remove the runs' cgroups that were still busy when their leader was reaped."""
    for path in list(_PENDING):
        remove(path)


def of(pid: int) -> str | None:
    """The run cgroup pid is in (an adopted process's), or None: one inside a cgroup
    named as our scope, wherever the daemon that started it lived."""
    if TREE is None:
        return None
    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            for line in f:
                if line.startswith(b"0::"):
                    path = os.path.normpath(TREE.mount + os.fsdecode(line[3:].strip()))
                    scope = os.path.dirname(path)
                    ours = os.path.basename(scope) == os.path.basename(TREE.scope)
                    return path if ours and os.path.exists(os.path.join(path, "cgroup.kill")) else None
    except OSError:
        return None
    return None


def _read(path: str) -> str:
    """A cgroup file's text ("" if it cannot be read): os-level, as it is read at every
    reap (a text file object costs several times more)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ""
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return b"".join(chunks).decode("ascii", "replace")


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
