"""Processes that left their job's process group, and orphans.

A child subreaper (PR_SET_CHILD_SUBREAPER, as PID 1 is) becomes the parent of every
orphan among its descendants: jobs' orphans are then the daemon's children, so they are
reaped (`reap_orphans`, on SIGCHLD) instead of piling up as zombies, and found again
where no cgroup holds them. prctl is reached through ctypes (about 1.4 ms to import), so
`become_subreaper` is for after the first jobs have started, off the start-up path.

Without a cgroup, `escaped(leader, pgid, mark)` finds what must stop with a job besides
its process group: the leader's descendants through /proc/PID/task/TID/children (those
that called setsid included), and the daemon's own children it did not start that
carry the run's mark (NAME=VALUE, its AIOS_RUN_TOKEN) in their environment: the orphans
of that run, once the subreaper has adopted them. A process that both left its parent
and cleared its environment is not found: that takes a cgroup. Imports nothing from aios.
"""
from __future__ import annotations

import os

from . import procfs

__all__ = ["become_subreaper", "is_subreaper", "reap_orphans", "escaped"]

_PR_SET_CHILD_SUBREAPER = 36
_SUBREAPER = False


def become_subreaper(on: bool = True) -> bool:
    """Make this process the reaper of its descendants' orphans (or, with on=False, stop
    being one: a daemon that ends inside a longer-lived process); False if the kernel
    refuses (or has no prctl)."""
    global _SUBREAPER
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        done = libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        done = False
    _SUBREAPER = on and done
    return _SUBREAPER or os.getpid() == 1


def is_subreaper() -> bool:
    return _SUBREAPER or os.getpid() == 1


def reap_orphans(tracked) -> list[int]:
    """Reap every exited child of ours whose pid is not in `tracked` (the jobs' leaders,
    which the caller reaps itself); return their pids. Exit statuses of tracked children
    are never taken: children are looked up by pid (/proc), or, where the kernel does
    not list children, peeked at with WNOWAIT until a tracked one is next."""
    children = procfs.children(os.getpid())
    if not children and not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return _reap_peeking(set(tracked))
    reaped = []
    for pid in children:
        if pid in tracked:
            continue
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG) is not None:
                reaped.append(pid)
        except ChildProcessError:
            continue
    return reaped


def _reap_peeking(tracked: set) -> list[int]:
    reaped = []
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if info is None or info.si_pid in tracked:
            return reaped
        os.waitpid(info.si_pid, os.WNOHANG)
        reaped.append(info.si_pid)


def escaped(leader: int, pgid: int, mark: bytes | None, tracked) -> list[int]:
    """Live processes of the job led by `leader` that are not in its process group: its
    descendants, and (as subreaper) our untracked children carrying `mark` and theirs."""
    roots = [leader]
    if mark is not None and is_subreaper():
        for pid in procfs.children(os.getpid()):
            if pid not in tracked and mark in (procfs.environ(pid) or b"").split(b"\0"):
                roots.append(pid)
    found = []
    for pid in _descendants(roots):
        try:
            if os.getpgid(pid) != pgid:
                found.append(pid)
        except ProcessLookupError:
            continue
    return found


def _descendants(roots: list[int]) -> list[int]:
    """roots that are not the leader, and every descendant of each (at most 10,000)."""
    seen, todo = set(), list(roots)
    while todo and len(seen) < 10_000:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(procfs.children(pid))
    seen.discard(roots[0])
    return sorted(seen)
