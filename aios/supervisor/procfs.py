"""What /proc says about a process: its state, parent and start time, its real uid, its
children, and the environment it was started with. Reads only; imports aios.record.

Every reader returns None (or an empty result) for a process that is gone or that we may
not read, so a caller never has to tell "exited" from "exited while we looked".
"""
from __future__ import annotations

import os

from ..record import record

__all__ = ["Stat", "stat", "start_ticks", "real_uid", "children", "environ", "read"]


def read(path: str, limit: int) -> bytes:
    """At most `limit` bytes of a /proc file; OSError if it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


@record
class Stat:
    """The fields of /proc/PID/stat a supervisor needs."""

    state: str          # R, S, D, T, Z (zombie), X (dead)...
    ppid: int
    pgrp: int
    ticks: int          # start time in clock ticks since boot

    @property
    def exited(self) -> bool:
        return self.state in ("Z", "X")


def stat(pid: int) -> Stat | None:
    """What /proc/PID/stat says of pid, or None if it is gone."""
    try:
        data = read(f"/proc/{pid}/stat", 4096)
    except (FileNotFoundError, ProcessLookupError):   # gone, or reaped between open and read
        return None
    if not data:
        return None
    # comm (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return Stat(state=fields[0].decode(), ppid=int(fields[1]), pgrp=int(fields[2]), ticks=int(fields[19]))


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if pid is gone."""
    st = stat(pid)
    return None if st is None else st.ticks


def real_uid(pid: int) -> int | None:
    """The real uid of pid (first field of Uid: in /proc/PID/status), or None."""
    try:
        data = read(f"/proc/{pid}/status", 8192)
    except OSError:
        return None
    start = data.find(b"\nUid:")
    return None if start < 0 else int(data[start + 5:].split()[0])


def children(pid: int) -> list[int]:
    """The children of every thread of pid (zombies included); [] if pid is gone or the
    kernel has no /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            found.extend(int(c) for c in read(f"/proc/{pid}/task/{tid}/children", 1 << 20).split())
        except OSError:
            continue
    return found


def environ(pid: int) -> bytes | None:
    """The environment pid was started with (NUL-separated NAME=VALUE, first MiB), or None
    if unreadable (gone, or another user's process and we are not root)."""
    try:
        return read(f"/proc/{pid}/environ", 1 << 20)
    except OSError:
        return None
