"""Per-run limits, and how each is enforced here.

    memory_max   cgroup memory.max; else RLIMIT_DATA, set (prlimit) right after the exec:
                 the forked child still holds the daemon's data, and the job's first
                 instants are not limited; allocations beyond it fail in the job, which
                 is not stopped, and its end is no `oom`
    cpu_quota    cgroup cpu.max; else not enforced
    cpu_weight   cgroup cpu.weight; else the nice value of the same share (unless `nice`
                 is set), never below 0 for a daemon that is not root
    nice         setpriority in the child
    nofile       RLIMIT_NOFILE in the child (soft and hard)
    ioclass      ioprio_set in the child (level 4; idle has none)

`plan(limits, controllers)` says which files to write into the run's cgroup, what the
child sets before exec, and a note for each limit enforced otherwise than asked
(`notes`, for `aios status`). Imports aios.record; ctypes only for an ioclass.
"""
from __future__ import annotations

import math
import os
import resource

from ..record import record

__all__ = ["Plan", "plan", "notes", "oom_kills", "ioprio_setter"]

_IOPRIO_CLASS = {"realtime": (1, 4), "best-effort": (2, 4), "idle": (3, 0)}
# ioprio_set's number on each architecture (Python has no os.ioprio_set).
_SYS_IOPRIO_SET = {"x86_64": 251, "i386": 289, "i686": 289, "aarch64": 30, "riscv64": 30,
                   "loongarch64": 30, "armv7l": 314, "armv6l": 314, "ppc64le": 273, "ppc64": 273,
                   "s390x": 282}


@record
class Plan:
    cgroup_files: dict          # file of the run's cgroup -> value
    rlimits: tuple              # (resource, soft, hard) the child sets before exec
    later: tuple                # (resource, soft, hard) set on the job right after its exec
    nice: int | None
    ioprio: int | None
    notes: tuple

    @property
    def in_child(self) -> bool:
        """Whether the child must set something before exec (a fork, not posix_spawn)."""
        return bool(self.rlimits) or self.nice is not None or self.ioprio is not None


def plan(limits: dict | None, controllers: frozenset | None) -> Plan:
    limits, have = limits or {}, controllers or frozenset()
    files, rlimits, later, notes = {}, [], [], []
    nice = limits.get("nice")
    if "memory_max" in limits:
        if "memory" in have:
            files["memory.max"] = str(limits["memory_max"])
        else:
            later.append((resource.RLIMIT_DATA, limits["memory_max"], limits["memory_max"]))
            notes.append("memory_max: a data-size limit (RLIMIT_DATA), no cgroup memory controller here: "
                         "allocations beyond it fail in the job, whose end is not an `oom`")
    if "cpu_quota" in limits:
        if "cpu" in have:
            files["cpu.max"] = f"{max(1000, round(limits['cpu_quota'] * 100_000))} 100000"
        else:
            notes.append("cpu_quota: not enforced, no cgroup cpu controller here")
    if "cpu_weight" in limits:
        if "cpu" in have:
            files["cpu.weight"] = str(limits["cpu_weight"])
        elif nice is None:
            nice = _nice_for(limits["cpu_weight"])
            notes.append(f"cpu_weight: as nice {nice}, no cgroup cpu controller here")
        else:
            notes.append("cpu_weight: not enforced (nice is set), no cgroup cpu controller here")
    if "nofile" in limits:
        rlimits.append((resource.RLIMIT_NOFILE, limits["nofile"], limits["nofile"]))
    ioprio = None
    if "ioclass" in limits:
        klass, level = _IOPRIO_CLASS[limits["ioclass"]]
        ioprio = klass << 13 | level
        if os.uname().machine not in _SYS_IOPRIO_SET:
            ioprio = None
            notes.append(f"ioclass: not applied, ioprio_set unknown on {os.uname().machine}")
    return Plan(cgroup_files=files, rlimits=tuple(rlimits), later=tuple(later), nice=nice, ioprio=ioprio,
                notes=tuple(notes))


def notes(limits: dict | None, controllers: frozenset | None) -> list[str]:
    """How `limits` fall short here, one line each (none where all are enforced)."""
    return list(plan(limits, controllers).notes)


def _nice_for(weight: int) -> int:
    """The nice value whose scheduler weight is `weight` percent of nice 0's (1.25x a step)."""
    nice = round(-math.log(weight / 100) / math.log(1.25))
    return max(-20 if os.geteuid() == 0 else 0, min(19, nice))


def ioprio_setter():
    """A function that sets the calling process's I/O priority (ioprio_set), or None on
    an architecture whose syscall number we do not know."""
    number = _SYS_IOPRIO_SET.get(os.uname().machine)
    if number is None:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def set_ioprio(value: int) -> None:
        if libc.syscall(number, 1, 0, value) != 0:      # IOPRIO_WHO_PROCESS, this process
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    return set_ioprio


def oom_kills(events: str) -> int:
    """The oom_kill count of a cgroup's memory.events text."""
    for line in events.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    return 0
