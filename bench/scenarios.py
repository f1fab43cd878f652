"""The scenarios: each is one function that runs one round on one system and returns
its samples, {row key: [values]} in ms, MiB or CPU ms. Every figure is a whole operation
as the user waits for it, timed from the moment the command starts (before the
interpreter exists) until the effect is visible in /proc (../shared/BENCH.md).

`plan(settings)` lists them with the rows they report. A scenario `needs` a feature
("floor", "always", "default_config", "interval"); a system without it is skipped for
that scenario (not applicable), never silently for any other reason.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Callable, NamedTuple

from . import measure
from .systems import Job, System, sleepers

Samples = dict[str, list[float]]
MIN_AGE = 1.5     # a managed process killed younger than min_uptime (1 s for AIOS, supervisord's
                  # startsecs, pm2) would count as a crash loop and be restarted after a backoff


class Settings(NamedTuple):
    quick: bool = False
    rounds: int = 5
    few: int = 10                  # children for shutdown, RSS and idle CPU
    many: int = 100                # jobs for cold start, shutdown and RSS at scale
    cpu_window: float = 30.0       # seconds of idle CPU measured
    lateness_window: float = 30.0  # seconds an every-1s job runs
    kills: int = 3                 # crash recoveries per round
    settle: float = 1.0            # seconds after start-up before memory or CPU is read
    timeout: float = 60.0          # liveness limit of any one wait


FULL = Settings()
QUICK = Settings(quick=True, rounds=1, few=5, many=20, cpu_window=2.0, lateness_window=4.0,
                 kills=1, settle=0.2)


class Row(NamedTuple):
    key: str
    label: str
    unit: str
    floor: str | None = None    # the floor row (of the system's interpreter) this row is divided by


class Scenario(NamedTuple):
    key: str                       # unique, e.g. "shutdown_100"
    family: str                    # for --only, e.g. "shutdown"
    title: str
    needs: str
    rows: tuple[Row, ...]
    run: Callable[..., Samples]    # run(system) -> samples of one round


# ---------------------------------------------------------------- floor

def floor(interpreter) -> Samples:
    """Spawn to exit of the interpreter's empty program, and its memory when idle."""
    samples = {"wall_ms": [interpreter.wall_ms(interpreter.argv)]}
    if interpreter.no_site:
        samples["nosite_wall_ms"] = [interpreter.wall_ms(interpreter.no_site)]
    samples["rss_mib"] = [interpreter.idle_memory_mib()["VmRSS"]]
    return samples


# ---------------------------------------------------------------- a running daemon

@contextmanager
def launched(system: System, jobs: Sequence[Job] | None, children: int,
             timeout: float) -> Iterator[dict[str, float]]:
    """Start `system` with `jobs` (None: its default configuration) and yield the ms from
    the launch until it reported ready ("ready") and, if `children`, until its first
    ("first") and all `children` ("all") managed processes ran. Always cleans up."""
    system.prepare(jobs)
    try:
        t0 = measure.now()
        system.launch()
        yield measure.watch(_start_conditions(system, children), t0, timeout, system.died)
    finally:
        system.cleanup()


def _start_conditions(system: System, children: int) -> dict[str, Callable[[], bool]]:
    conditions = {"ready": system.is_ready}
    if children >= 1:
        conditions["first"] = lambda: len(system.managed_pids()) >= 1
    if children > 1:
        conditions["all"] = lambda: len(system.managed_pids()) >= children
    return conditions


def _require_running(system: System) -> None:
    reason = system.died()
    if reason:
        raise measure.MeasureError(reason)


def _stop_and_wait(system: System, timeout: float) -> dict[str, float]:
    """Stop the daemon as a user would; ms until every managed process it ran is gone
    ("children": exited, whether reaped or not) and until the daemon is gone too ("all")."""
    procs = [i for i in map(measure.identity, system.managed_pids()) if i is not None]
    t0 = measure.now()
    system.stop()
    marks = measure.watch({"children": lambda: _all_gone(procs),
                           "all": lambda: system.exited() and _all_gone(procs)}, t0, timeout)
    left = system.leftovers()
    if left:
        raise measure.MeasureError(f"{len(left)} managed process(es) still running after the daemon "
                                   f"exited: pids {sorted(i.pid for i in left)[:5]}")
    return marks


def _all_gone(procs: list[measure.Ident]) -> bool:
    """True once no process of `procs` runs. Drops the ones seen gone (they stay gone),
    and looks no further than the first still running: one /proc read per poll."""
    while procs and not measure.alive(procs[0]):
        procs.pop(0)
    return not procs


# ---------------------------------------------------------------- the manager scenarios

def cold_start(system: System, jobs: Sequence[Job] | None, children: int, s: Settings) -> Samples:
    with launched(system, jobs, children, s.timeout) as marks:
        samples = {"first_child_ms": [marks["first"]], "ready_ms": [marks["ready"]]}
        if "all" in marks:
            samples["all_children_ms"] = [marks["all"]]
        own = system.self_reported_ready_ms()
        if own is not None:
            samples["self_ready_ms"] = [own]
        return samples


def crash_recovery(system: System, s: Settings) -> Samples:
    with launched(system, sleepers(1), 1, s.timeout):
        return {"recovery_ms": [_kill_and_wait(system, s.timeout) for _ in range(s.kills)]}


def _kill_and_wait(system: System, timeout: float) -> float:
    """kill -9 the managed process; ms until a replacement runs its program."""
    victim = measure.identity(system.managed_pids()[0])
    time.sleep(max(0.0, MIN_AGE - measure.age(victim.pid)))   # waiting out a duration, not a condition
    t0 = measure.now()
    os.kill(victim.pid, signal.SIGKILL)
    return measure.wait_for(lambda: _replaced(system, victim), t0, timeout,
                            "a replacement process", system.died)


def _replaced(system: System, victim: measure.Ident) -> bool:
    return any(measure.identity(pid) not in (None, victim) for pid in system.managed_pids())


def shutdown(system: System, n: int, s: Settings) -> Samples:
    with launched(system, sleepers(n), n, s.timeout):
        marks = _stop_and_wait(system, s.timeout)
        return {"children_ms": [marks["children"]], "stop_ms": [marks["all"]]}


def rss(system: System, n: int, s: Settings) -> Samples:
    with launched(system, sleepers(n), n, s.timeout):
        time.sleep(s.settle)
        _require_running(system)
        memory = measure.memory_mib(system.daemon_pid)
        return {"rss_mib": [memory["VmRSS"]], "hwm_mib": [memory["VmHWM"]]}


def idle_cpu(system: System, n: int, s: Settings) -> Samples:
    with launched(system, sleepers(n), n, s.timeout):
        time.sleep(s.settle)
        before, t0 = measure.cpu_seconds(system.daemon_pid), measure.now()
        time.sleep(s.cpu_window)                                # the window itself
        used, window = measure.cpu_seconds(system.daemon_pid) - before, measure.now() - t0
        _require_running(system)
        return {"cpu_ms": [used * 1000.0], "window_s": [window]}


def interval_lateness(system: System, s: Settings) -> Samples:
    """An every-1s job running `true`: started - due of each timer-driven run, as the
    daemon records them (the first run, at start-up, is not a timer wake and is left out)."""
    with launched(system, [Job("tick", ("true",), every=1.0)], 0, s.timeout):
        time.sleep(s.lateness_window)
        _require_running(system)
        _stop_and_wait(system, s.timeout)
        late = system.interval_lateness_ms("tick")[1:]
        if not late:
            raise measure.MeasureError(f"no timer-driven run of the every-1s job in {s.lateness_window:g} s")
        return {"p50_ms": [measure.percentile(late, 50)], "p99_ms": [measure.percentile(late, 99)],
                "runs": [float(len(late))], "all_runs_ms": late}


# ---------------------------------------------------------------- the plan

FLOOR_ROWS = (
    Row("wall_ms", "spawn → exit", "ms"),
    Row("nosite_wall_ms", "spawn → exit without site (-S)", "ms"),
    Row("rss_mib", "VmRSS once started, idle", "MiB"),
)
_SHUTDOWN_ROWS = (Row("children_ms", "SIGTERM → every child gone", "ms"),
                  Row("stop_ms", "SIGTERM → daemon and every child gone", "ms"))
_RSS_ROWS = (Row("rss_mib", "daemon VmRSS", "MiB", "rss_mib"),
             Row("hwm_mib", "daemon VmHWM (peak)", "MiB", "rss_mib"))


def _cold_rows(children: int) -> tuple[Row, ...]:
    rows = [Row("first_child_ms", "launch → first managed process running", "ms", "wall_ms")]
    if children > 1:
        rows.append(Row("all_children_ms", f"launch → all {children} running", "ms", "wall_ms"))
    rows += [Row("ready_ms", "launch → daemon reports ready", "ms", "wall_ms"),
             Row("self_ready_ms", "the daemon's own 'ready in' figure (excludes interpreter start)", "ms")]
    return tuple(rows)


def _cold(key: str, title: str, jobs: Sequence[Job] | None, children: int, s: Settings) -> Scenario:
    needs = "default_config" if jobs is None else "always"
    return Scenario(key, "cold_start", title, needs, _cold_rows(children),
                    partial(cold_start, jobs=jobs, children=children, s=s))


def _sized(family: str, n: int, title: str, rows: tuple[Row, ...], fn, s: Settings) -> Scenario:
    return Scenario(f"{family}_{n}", family, title, "always", rows, partial(fn, n=n, s=s))


def plan(s: Settings) -> list[Scenario]:
    few, many = s.few, s.many
    return [
        Scenario("floor", "floor", "Interpreter floor, empty program", "floor", FLOOR_ROWS, floor),
        _cold("cold_start_1", "Cold start, 1 always job", sleepers(1), 1, s),
        _cold("cold_start_default", "Cold start, empty home (writes the default 7 example jobs; DEVICE_TAGS empty)", None, 1, s),
        _cold(f"cold_start_{many}", f"Cold start, {many} always jobs", sleepers(many), many, s),
        Scenario("crash_recovery", "crash_recovery", "Crash recovery", "always",
                 (Row("recovery_ms", "kill -9 of a managed `sleep` → replacement running", "ms"),),
                 partial(crash_recovery, s=s)),
        _sized("shutdown", few, f"Shutdown, {few} children", _SHUTDOWN_ROWS, shutdown, s),
        _sized("shutdown", many, f"Shutdown, {many} children", _SHUTDOWN_ROWS, shutdown, s),
        _sized("rss", few, f"Daemon memory, {few} children", _RSS_ROWS, rss, s),
        _sized("rss", many, f"Daemon memory, {many} children", _RSS_ROWS, rss, s),
        Scenario("idle_cpu", "idle_cpu", f"Idle CPU, {few} children", "always",
                 (Row("cpu_ms", f"daemon utime+stime over {s.cpu_window:g} s", "CPU ms"),),
                 partial(idle_cpu, n=few, s=s)),
        Scenario("interval_lateness", "interval_lateness", "Every-1s interval job", "interval",
                 (Row("p50_ms", f"lateness (started − due) p50 over {s.lateness_window:g} s", "ms"),
                  Row("p99_ms", "lateness p99 (nearest rank)", "ms")),
                 partial(interval_lateness, s=s)),
    ]

