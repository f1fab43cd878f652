"""Processes, and nothing else: start, watch, signal, reap and adopt job processes.

    spawn.py    start a job's process; every failure to start is one SpawnError
    forkexec.py the fork that changes user and groups before exec (posix_spawn cannot)
    procs.py    Proc: a started or adopted process-group leader; signal, reap, adopt
    procfs.py   what /proc says about a process

It decides nothing (no restarts, no timeouts, no schedules). Imports aios.errors, and
aios.spec only to word an error; never store, schedule or the engine.
"""
from __future__ import annotations

from ..errors import SpawnError
from .procs import (HAS_PIDFD, Leader, Proc, adopt, alive, close, find_leaders, leaders, reap,
                    signal_group, start_ticks)
from .spawn import close_on_exec_all, spawn

__all__ = ["SpawnError", "Proc", "HAS_PIDFD", "spawn", "close_on_exec_all", "start_ticks",
           "signal_group", "reap", "adopt", "alive", "close", "leaders", "Leader", "find_leaders"]
