"""The scenarios: each is one function that runs one round on one system and returns
its samples, {row key: [values]} in ms, MiB or CPU ms. Every figure is a whole operation
as the user waits for it, timed from the moment the command starts (before the
interpreter exists) until the effect is visible in /proc.

`plan.plan(settings)` lists them with the rows they report. A scenario `needs` a feature
("floor", "always", "cli", "default_config", "interval", "aios"); a system without it is
skipped for that scenario (not applicable), never silently for any other reason. The
AIOS-only scenarios (scheduling, triggers, the control plane) are in `aios_only`.
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Callable, NamedTuple

from . import measure
from .systems import Job, System, python_job, sleepers

Samples = dict[str, list[float]]
MIN_AGE = 1.5     # a managed process killed younger than min_uptime (1 s for AIOS, supervisord's
                  # startsecs, pm2) would count as a crash loop and be restarted after a backoff


class Settings(NamedTuple):
    quick: bool = False
    rounds: int = 5
    few: int = 10                  # children for shutdown, RSS and idle CPU
    many: int = 100                # jobs for cold start, CLI status, shutdown, RSS, adoption
    scale: int = 1000              # always jobs of the scale row
    cpu_window: float = 30.0       # seconds of idle CPU measured
    lateness_window: float = 30.0  # seconds an every-1s job runs
    kills: int = 3                 # crash recoveries and CLI restarts per round
    repeats: int = 3               # CLI commands (--help, status) per round
    triggers: int = 1000           # triggers sent / rows inserted / runs dispatched per round
    pings: int = 1000              # control round trips per round
    log_lines: int = 100_000       # lines a job writes, with timestamps off and on
    launches: int = 5              # triggered runs of each Python program job per round (zygote, spawn)
    python_jobs: int = 200         # always program jobs of the "all running" row
    python_pss: int = 100          # running program jobs whose memory is summed
    settle: float = 1.0            # seconds after start-up before memory or CPU is read
    timeout: float = 60.0          # liveness limit of any one wait
    scale_timeout: float = 300.0   # ... of the scale row's start-up
    fleet_clients: int = 3         # fleet rows: trigger clients per device (each sends `triggers`)
    remote: int = 200              # ... triggers sent to another device, one after the other
    idle_devices: int = 50         # ... daemons on one PostgreSQL for the idle CPU row


FULL = Settings()
QUICK = Settings(quick=True, rounds=1, few=5, many=20, scale=50, cpu_window=2.0, lateness_window=4.0,
                 kills=1, repeats=1, triggers=50, pings=200, settle=0.2, log_lines=2000, remote=10,
                 idle_devices=5, launches=2, python_jobs=10, python_pss=5)


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
def launched(system: System, jobs: Sequence[Job] | None, children: int, timeout: float,
             extra: dict[str, Callable[[], bool]] | None = None) -> Iterator[dict[str, float]]:
    """Start `system` with `jobs` (None: its default configuration) and yield the ms from
    the launch until its control endpoint answered ("ready") and, if `children`, until its
    first ("first") and all `children` ("all") managed processes ran (and until each
    `extra` condition held). Always cleans up, whatever happened."""
    try:
        system.prepare(jobs)
        system.before_launch()
        t0 = measure.now()
        system.launch()
        conditions = {**_start_conditions(system, children), **(extra or {})}
        yield measure.watch(conditions, t0, timeout, system.died)
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
    victim = _aged_victim(system, timeout)
    t0 = measure.now()
    os.kill(victim.pid, signal.SIGKILL)
    return measure.wait_for(lambda: _replaced(system, victim), t0, timeout,
                            "a replacement process", system.died)


def _replaced(system: System, victim: measure.Ident) -> bool:
    return any(ident != victim for ident in _running(system))


def _running(system: System) -> list[measure.Ident]:
    """The managed processes that run now (not a zombie its manager has yet to reap)."""
    idents = [measure.identity(pid) for pid in system.managed_pids()]
    return [ident for ident in idents if ident is not None and measure.alive(ident)]


def shutdown(system: System, n: int, s: Settings) -> Samples:
    with launched(system, sleepers(n), n, s.timeout):
        time.sleep(s.settle)     # circus loses a SIGTERM that arrives while it still starts watchers
        _require_running(system)
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


def warm_up(system: System, s: Settings) -> None:
    """Untimed: one start with one job and one run of each CLI command (fills the
    bytecode and page caches)."""
    with launched(system, sleepers(1), 1, s.timeout):
        for action in ("help", "status"):
            system.run_cli(action).communicate(timeout=s.timeout)


def spawn_python(system: System, s: Settings) -> Samples:
    """One always job running a Python program: launch -> the program's own code runs."""
    marker = system.scratch / f"{system.name}-{uuid.uuid4().hex}.started"
    try:
        with launched(system, [python_job("py000", marker)], 1, s.timeout,
                      extra={"code": marker.exists}) as marks:
            return {"code_ms": [marks["code"]], "first_child_ms": [marks["first"]]}
    finally:
        marker.unlink(missing_ok=True)


def cli_commands(system: System, s: Settings) -> Samples:
    """`--help` and `status` through the system's own CLI with `many` jobs running: wall
    time of the whole command (its interpreter's start included)."""
    with launched(system, sleepers(s.many), s.many, s.timeout):
        time.sleep(MIN_AGE)      # every tool now reports its processes as running
        samples: Samples = {"help_ms": [], "status_ms": []}
        for _ in range(s.repeats):
            samples["help_ms"].append(_cli_wall(system, "help", s.timeout))
            samples["status_ms"].append(_cli_wall(system, "status", s.timeout))
        return samples


def _cli_wall(system: System, action: str, timeout: float, job: str | None = None) -> float:
    t0 = measure.now()
    proc = system.run_cli(action, job)
    _, err = proc.communicate(timeout=timeout)
    took = measure.ms_since(t0)
    if proc.returncode != 0:
        tail = " ".join(err.decode(errors="replace").split())[-200:]
        raise measure.MeasureError(f"`{system.name} {action}` exited {proc.returncode}: {tail}")
    return took


def restart_cli(system: System, s: Settings) -> Samples:
    """Restart the one job through the system's own CLI: ms until the new process runs,
    and until the command returned."""
    samples: Samples = {"restart_ms": [], "cli_ms": []}
    with launched(system, sleepers(1), 1, s.timeout):
        for _ in range(s.kills):
            restart_ms, cli_ms = _restart_once(system, s.timeout)
            samples["restart_ms"].append(restart_ms)
            samples["cli_ms"].append(cli_ms)
    return samples


def _restart_once(system: System, timeout: float) -> tuple[float, float]:
    victim = _aged_victim(system, timeout)
    t0 = measure.now()
    proc = system.run_cli("restart", "sleep000")
    try:
        marks = measure.watch({"new": lambda: _replaced(system, victim), "cli": lambda: proc.poll() is not None},
                              t0, timeout, system.died)
    finally:
        _, err = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        tail = " ".join(err.decode(errors="replace").split())[-200:]
        raise measure.MeasureError(f"`{system.name} restart` exited {proc.returncode}: {tail}")
    return marks["new"], marks["cli"]


def _aged_victim(system: System, timeout: float) -> measure.Ident:
    """The managed process, once it has run MIN_AGE seconds."""
    t0 = measure.now()
    measure.wait_for(lambda: len(_running(system)) >= 1, t0, timeout, "a managed process", system.died)
    victim = _running(system)[0]
    time.sleep(max(0.0, MIN_AGE - measure.age(victim.pid)))   # waiting out a duration, not a condition
    return victim


def scale(system: System, s: Settings) -> Samples:
    """`scale` always jobs: launch -> all running, and the daemon's memory then."""
    with launched(system, sleepers(s.scale), s.scale, s.scale_timeout) as marks:
        time.sleep(s.settle)
        _require_running(system)
        memory = measure.memory_mib(system.daemon_pid)
        return {"all_children_ms": [marks["all"]], "ready_ms": [marks["ready"]],
                "rss_mib": [memory["VmRSS"]], "hwm_mib": [memory["VmHWM"]]}
