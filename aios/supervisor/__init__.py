"""Processes, and nothing else: start, watch, signal, reap and adopt job processes, and
keep every process of a job inside it.

    spawn.py    start a job's process; every failure to start is one SpawnError
    forkexec.py the fork that changes user and groups before exec (posix_spawn cannot)
    procs.py    Proc: a started or adopted process-group leader; signal, reap, adopt
    cgroup.py   cgroup v2: each run in a cgroup of its own, stopped as a whole
    limits.py   per-run limits: through the cgroup, or in the child, and what falls short
    orphans.py  the subreaper: orphans reaped, and found again where no cgroup holds them
    procfs.py   what /proc says about a process

Containment, strongest first (`containment()` says which is in use): a cgroup per run
(`setup_containment`, where cgroup v2 is delegated to us); else the process group plus,
as subreaper (`become_subreaper`), the run's descendants and marked orphans; else the
process group alone.

It decides nothing (no restarts, no timeouts, no schedules). Imports aios.errors and
aios.record, and aios.spec only to word an error; never store, schedule or the engine.
"""
from __future__ import annotations

from ..errors import SpawnError
from . import cgroup, orphans
from .orphans import become_subreaper, reap_orphans
from .procs import (HAS_PIDFD, Leader, Proc, adopt, alive, close, leaders, oom_killed,
                    reap, signal_group, start_ticks)
from .spawn import close_on_exec_all, set_jobs_nofile, spawn

__all__ = ["SpawnError", "Proc", "HAS_PIDFD", "spawn", "close_on_exec_all", "set_jobs_nofile", "start_ticks",
           "signal_group", "reap", "adopt", "alive", "close", "leaders", "Leader",
           "probe_containment", "setup_containment", "end_containment", "containment", "become_subreaper",
           "reap_orphans", "limit_notes", "oom_killed"]


def probe_containment() -> None:
    """Call as early as possible before setup_containment: it begins, in parallel, what
    setup_containment would otherwise wait for (cgroup.probe)."""
    cgroup.probe()


def setup_containment(scope: str) -> str:
    """Call once at start, before the first spawn: put every run from now on in a cgroup
    of its own inside `scope` (a name unique to this daemon's home, e.g. "aios-<hash>"),
    where cgroup v2 is there for us to manage; return `containment()`."""
    cgroup.setup(scope)
    return containment()


def end_containment() -> None:
    """Undo setup_containment (the daemon ends; the process may live on)."""
    cgroup.teardown()


def containment() -> str:
    """How a job's processes are kept together, for `aios status`."""
    if cgroup.TREE is not None:
        return f"cgroup v2 ({cgroup.TREE.scope})"
    if orphans.is_subreaper():
        return "process group + subreaper"
    return "process group"


def limit_notes(limits: dict | None) -> list[str]:
    """How a job's limits (memory_max, cpu_quota, ...) fall short of what was asked here,
    one line each, e.g. "cpu_quota: not enforced, no cgroup cpu controller here"."""
    from .spawn import limits_plan

    return list(limits_plan(limits).notes)
