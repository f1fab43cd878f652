"""Measurement from the kernel: processes, memory and CPU read from /proc, wall time
from time.perf_counter, waiting by polling /proc every millisecond.

A process is named by its `Ident` (pid and start time in clock ticks), so a pid reused
by another process is never mistaken for the one we watched. Nothing here knows about
any process manager; standard library only.
"""
from __future__ import annotations

import math
import os
import time
from typing import Callable, NamedTuple

POLL = 0.001                      # the polling period: 1 ms
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


class MeasureError(Exception):
    """A measurement could not be made; the message says what was awaited and why."""


class Ident(NamedTuple):
    pid: int
    ticks: int                    # start time since boot, in clock ticks (/proc/PID/stat field 22)


class Stat(NamedTuple):
    state: str
    ppid: int
    utime: int
    stime: int
    ticks: int


now = time.perf_counter


def ms_since(t0: float) -> float:
    return (now() - t0) * 1000.0


# ---------------------------------------------------------------- /proc readers

def _read(path: str, size: int = 1 << 20) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = b""
        while len(data) < size:   # /proc files come a page at a time (e.g. 1,000 children)
            chunk = os.read(fd, size - len(data))
            if not chunk:
                break
            data += chunk
        return data
    except OSError:               # e.g. ESRCH: the process went away between open and read
        return None
    finally:
        os.close(fd)


def stat(pid: int) -> Stat | None:
    """Fields of /proc/PID/stat, or None if the process is gone (reaped)."""
    data = _read(f"/proc/{pid}/stat", 4096)
    if not data:
        return None
    # comm (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'.
    fields = data[data.rindex(b")") + 2:].split()
    return Stat(fields[0].decode(), int(fields[1]), int(fields[11]), int(fields[12]), int(fields[19]))


def identity(pid: int) -> Ident | None:
    st = stat(pid)
    return None if st is None else Ident(pid, st.ticks)


def alive(ident: Ident) -> bool:
    """True while the process exists and has not exited (a zombie has exited)."""
    st = stat(ident.pid)
    return st is not None and st.ticks == ident.ticks and st.state not in ("Z", "X")


def cmdline(pid: int) -> bytes | None:
    return _read(f"/proc/{pid}/cmdline")


def environ(pid: int) -> bytes | None:
    return _read(f"/proc/{pid}/environ")


def age(pid: int) -> float:
    """Seconds since the process started (kernel clock-tick resolution)."""
    st = stat(pid)
    if st is None:
        raise MeasureError(f"pid {pid} is gone")
    uptime = float((_read("/proc/uptime") or b"0").split()[0])
    return uptime - st.ticks / CLK_TCK


def memory_mib(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of /proc/PID/status, in MiB."""
    text = (_read(f"/proc/{pid}/status") or b"").decode()
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024 / MIB   # the kernel reports kB
    if len(found) != 2:
        raise MeasureError(f"pid {pid}: no VmRSS/VmHWM in /proc/{pid}/status (gone?)")
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds; resolution 1/CLK_TCK."""
    st = stat(pid)
    if st is None:
        raise MeasureError(f"pid {pid} is gone")
    return (st.utime + st.stime) / CLK_TCK


# ---------------------------------------------------------------- children

class Children:
    """Children of processes, from /proc/PID/task/*/children where the kernel has it
    (CONFIG_PROC_CHILDREN), else from the ppid field of every /proc/PID/stat. The scan is
    incremental: a pid's ppid is read once, when the pid first appears, so each poll
    costs one listdir plus one read per new pid. Create it before starting the parent,
    so that every pid older than the parent is known not to be its child."""

    def __init__(self):
        self.from_task = os.path.exists(f"/proc/self/task/{os.getpid()}/children")
        self.ppids: dict[int, int] = {}
        if not self.from_task:
            self._refresh()

    def of(self, pid: int) -> list[int]:
        if self.from_task:
            return self._from_task(pid)
        self._refresh()
        return [child for child, ppid in self.ppids.items() if ppid == pid]

    def _from_task(self, pid: int) -> list[int]:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            return []
        found: list[int] = []
        for tid in tids:
            found.extend(int(c) for c in (_read(f"/proc/{pid}/task/{tid}/children") or b"").split())
        return found

    def _refresh(self) -> None:
        current = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        for pid in self.ppids.keys() - current:
            del self.ppids[pid]
        for pid in current - self.ppids.keys():
            st = stat(pid)
            if st is not None:
                self.ppids[pid] = st.ppid


# ---------------------------------------------------------------- waiting and timing

def watch(conditions: dict[str, Callable[[], bool]], t0: float, timeout: float,
          abort: Callable[[], str | None] = lambda: None) -> dict[str, float]:
    """Poll every condition each millisecond until all have held once; return, for each,
    the ms from t0 until it was first seen true. `abort` returning a reason stops the
    wait with a MeasureError (e.g. the daemon died)."""
    marks: dict[str, float] = {}
    while True:
        seen = [name for name, condition in conditions.items() if name not in marks and condition()]
        stamp = ms_since(t0)          # one stamp per poll, taken after looking: never early
        marks.update((name, stamp) for name in seen)
        if len(marks) == len(conditions):
            return marks
        _check_wait(conditions, marks, t0, timeout, abort)
        time.sleep(POLL)


def _check_wait(conditions, marks, t0: float, timeout: float, abort) -> None:
    reason = abort()
    missing = ", ".join(name for name in conditions if name not in marks)
    if reason:
        raise MeasureError(f"{reason} (while waiting for: {missing})")
    if now() - t0 > timeout:
        raise MeasureError(f"timed out after {timeout:g} s waiting for: {missing}")


def wait_for(condition: Callable[[], bool], t0: float, timeout: float, what: str,
             abort: Callable[[], str | None] = lambda: None) -> float:
    """ms from t0 until `condition` was first seen true (1 ms polling)."""
    return watch({what: condition}, t0, timeout, abort)[what]


# ---------------------------------------------------------------- client processes

def together(argvs: list[list[str]], env: dict[str, str], cwd: str, timeout: float) -> list[dict]:
    """Start one process per argv; each prints "ready" once set up, waits for a line on
    stdin, does its work and prints one JSON object. All get their line at once; their
    objects, in order. A process that fails is a MeasureError with its last words."""
    import json
    import subprocess

    procs = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=cwd) for argv in argvs]
    try:
        for proc in procs:
            if proc.stdout.readline() != "ready\n":
                raise MeasureError(f"a client could not start: {proc.communicate(timeout=timeout)[1].strip()[-300:]}")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            if proc.returncode != 0:
                raise MeasureError(f"a client failed: {err.strip()[-300:]}")
            results.append(json.loads(out))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- statistics

def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): a value that was actually observed."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": median(values), "min": min(values), "max": max(values), "n": len(values)}
