"""The vocabulary of AIOS: job specs, statuses, job state, runs, triggers, errors.

Pure: no clocks, no I/O. Besides the records it holds the few value checks other modules
share without parsing a job: job names (NAME_RE), durations, signal names, exec-able text,
and `show_value` for error messages. Turning a `[jobs.NAME]` table into a JobSpec is
aios.jobtable's. Imports aios.errors and aios.record (aios.cron only for a type name);
must not import jobtable or anything that builds on it.
"""
from __future__ import annotations

import os
import re
import signal
from datetime import time as Clock
from enum import Enum
from typing import TYPE_CHECKING

from .errors import AiosError
from .record import factory, fields, record, replace

if TYPE_CHECKING:
    from .cron import CronExpr

__all__ = [
    "AiosError", "SpecError", "JobType", "Status", "Outcome", "JobSpec", "JobState", "Run", "Trigger",
    "Event", "Device", "Lease", "Command", "Settings", "plain", "record", "replace", "fields", "factory",
    "NAME_RE", "MAX_ARG_BYTES", "show_value", "exec_text_problem", "parse_duration", "parse_signal",
]


class SpecError(AiosError):
    """A job specification is invalid; fix the field named in the message."""


class JobType(str, Enum):
    ALWAYS = "always"
    DAILY = "daily"
    INTERVAL = "interval"
    RANDOM_DAILY = "random_daily"
    TRIGGER = "trigger"
    IDLE = "idle"


class Status(str, Enum):
    STOPPED = "stopped"        # not running and nothing planned (stopped, or exited cleanly)
    WAITING = "waiting"        # scheduled: waiting for its time, a trigger or idleness
    RUNNING = "running"
    STOPPING = "stopping"      # stop signal sent, waiting for the process group to exit
    BACKOFF = "backoff"        # waiting to restart or retry after a failure
    FAILED = "failed"          # crash loop: probed again after a cool-down
    DISABLED = "disabled"
    INELIGIBLE = "ineligible"  # its tags are not all in DEVICE_TAGS
    STANDBY = "standby"        # a fleet job another device runs (or will: it holds the lease)


class Outcome(str, Enum):
    OK = "ok"                      # exited 0
    FAILED = "failed"              # exited non-zero
    KILLED = "killed"              # died of a signal AIOS did not send
    TIMEOUT = "timeout"            # stopped because it ran past its timeout
    STOPPED = "stopped"            # stopped on request (stop, restart, shutdown)
    PREEMPTED = "preempted"        # idle run stopped because other work started
    SPAWN_FAILED = "spawn_failed"  # the program could not be started
    OOM = "oom"                    # killed by the kernel for passing its memory_max
    LOST = "lost"                  # the daemon died and the process was gone on its return
    UNKNOWN = "unknown"            # adopted after a crash, it ended; its exit status is unknowable


@record
class JobSpec:
    name: str
    type: JobType
    program: str | None = None              # "file.py:func" inside Programs/
    command: tuple[str, ...] | None = None  # argv; one string when shell is true
    shell: bool = False
    args: tuple = ()
    kwargs: dict = factory(dict)
    tags: tuple[str, ...] = ()
    enabled: bool = True
    priority: int = 0
    env: dict = factory(dict)
    cwd: str | None = None
    time: Clock | None = None               # daily: at this time (on `days`), or
    cron: CronExpr | None = None            # daily: at every instant this matches
    days: tuple[int, ...] | None = None     # daily with time: weekdays, 0 = Monday (None: all)
    timezone: str | None = None             # daily, random_daily: their zone (None: the daemon's)
    after: Clock | None = None              # random_daily window start
    before: Clock | None = None             # random_daily window end
    interval: float | None = None           # interval, seconds
    catch_up: str = "once"                  # daily, interval, random_daily
    catch_up_max: int = 10
    idle_after: float = 300.0               # idle
    cooldown: float = 3600.0                # idle
    max_parallel: int = 1                   # trigger
    restart: str = "always"                 # always: "always" | "on-failure"
    min_uptime: float = 1.0
    retries: int = 0
    backoff: float = 0.1
    backoff_factor: float = 2.0
    backoff_max: float = 60.0
    failed_cooldown: float = 600.0
    timeout: float | None = None
    stop_signal: int = int(signal.SIGTERM)
    stop_timeout: float = 10.0
    adopt: bool = True
    user: str | None = None                 # run as this user (name or numeric id)
    group: str | None = None                # and this group (default: the user's)
    groups: tuple[str, ...] = ()            # supplementary groups, beside the user's own
    umask: int | None = None
    control: bool = False                   # its user may use the control socket (the dashboard)
    memory_max: int | None = None           # bytes
    cpu_quota: float | None = None          # CPUs (0.5: half of one)
    cpu_weight: int | None = None           # 1..10000, 100 as everyone else
    nice: int | None = None
    nofile: int | None = None               # open files
    ioclass: str | None = None              # "realtime", "best-effort" or "idle"
    env_file: str | None = None             # dotenv file, read at each start
    scope: str = "device"                   # fleet mode: "device" (a copy per device) or "fleet" (one in all)
    prefer: tuple[str, ...] = ()            # fleet jobs: the device ids to run on first, in order
    local: bool = False                     # fleet mode: this device's own job, not published
    on_failure: str | None = None           # a job triggered when a run fails for good or the job enters failed
    on_success: str | None = None           # a job triggered when a run ends ok
    after_jobs: tuple[str, ...] = ()        # `after`: run once each of these jobs' latest run succeeded
    reload_signal: int | None = None        # what `aios reload` sends
    instances: int | None = None            # always: run copies NAME.0 .. NAME.N-1 (config makes them)
    instance: int | None = None             # a copy: its number (AIOS_INSTANCE)
    instance_of: str | None = None          # a copy: the name of the job it copies
    start: str | None = None                # program jobs: "zygote" or "spawn" (None: [python] start)
    preload: tuple[str, ...] = ()           # program jobs: modules their zygote imports first

    @property
    def is_scheduled(self) -> bool:
        return self.type in (JobType.DAILY, JobType.INTERVAL, JobType.RANDOM_DAILY)


@record
class JobState:
    """What one device knows about one job; persisted on every change."""

    job: str
    status: Status = Status.STOPPED
    why: str = ""
    since: float = 0.0                  # epoch seconds when `status` was entered
    pid: int | None = None
    run_id: int | None = None
    attempts: int = 0                   # consecutive quick failures, or the retry attempt
    restarts: int = 0                   # automatic restarts of an always job
    next_due: float | None = None       # epoch seconds of the next planned start
    last_slot: float | None = None      # scheduled jobs: the last slot run, skipped or anchored
    slot_boot: float | None = None      # CLOCK_BOOTTIME seconds at last_slot (survives wall-clock steps)
    boot_id: str | None = None          # the kernel's boot id when slot_boot was taken
    draw_day: str | None = None         # random_daily: ISO day of the stored draw
    draw_at: float | None = None        # random_daily: the drawn moment, epoch seconds
    enabled: bool | None = None         # runtime enable/disable; None follows the spec
    held: bool = False                  # stopped on request: not started again until asked


@record
class Run:
    job: str
    started: float                      # epoch seconds
    id: int | None = None
    device: str = ""
    attempt: int = 1
    trigger_id: int | None = None
    due: float | None = None            # the slot it was started for, epoch seconds
    pid: int | None = None
    pid_start: int | None = None        # process start time in clock ticks (/proc/PID/stat)
    ended: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    outcome: Outcome | None = None
    epoch: int | None = None            # fleet jobs: the lease epoch (fencing token) it ran under


@record
class Trigger:
    job: str
    id: int | None = None
    args: tuple = ()
    kwargs: dict = factory(dict)
    created: float = 0.0
    claimed: float | None = None
    device: str | None = None
    done: bool = False
    outcome: str | None = None
    run_id: int | None = None           # the run that completed it
    target: str | None = None           # fleet: the one device that may run it (None: any)


@record
class Event:
    ts: float
    name: str                           # stable event name, e.g. "restart_scheduled"
    message: str = ""
    job: str | None = None
    device: str = ""
    id: int | None = None
    data: dict | None = None            # the state it announces (a job's status), JSON


@record
class Device:
    """One device of a fleet as its heartbeats describe it. Times are on the database's clock."""

    id: str
    tags: tuple[str, ...] = ()
    version: str = ""
    load: float = 0.0
    heartbeat: float | None = None      # epoch seconds of the last heartbeat
    age: float | None = None            # seconds since that heartbeat
    running: tuple[str, ...] = ()       # jobs with an open run on the device
    claimed: int = 0                    # triggers it claimed and has not finished


@record
class Lease:
    """The right to run a fleet-scope job. `epoch` grows with every change of holder (a
    fencing token); `expires` is on the database's clock, so it can only be compared with
    other database times: a holder keeps its own deadline (see Store.renew_lease)."""

    job: str
    device: str
    epoch: int
    expires: float                      # epoch seconds, database clock
    ttl: float


@record
class Command:
    """An operation routed through the database to the daemon of `device`."""

    id: int
    device: str
    op: str                             # start, stop, restart, trigger, ...
    fields: dict = factory(dict)
    sender: str = ""
    created: float = 0.0                # epoch seconds, database clock
    taken: float | None = None
    outcome: str | None = None


@record
class Settings:
    """Device-wide settings from aios.toml and the environment."""

    device_id: str
    tags: frozenset = frozenset()
    web_host: str = "127.0.0.1"
    web_port: int = 8787
    web_token: str | None = None
    log_max_bytes: int = 10 * 1024 * 1024
    log_keep: int = 3
    log_timestamps: str = "none"        # "local", "utc": job logs stamped per line (logformat); "none": raw
    retention_days: float = 30.0        # runs, triggers and events older than this are pruned (0: never)
    store_url: str | None = None        # None: orchestrator.db in AIOS_HOME; never holds a password
    store_password_file: str | None = None
    lease_ttl: float = 10.0             # fleet jobs: how long a lease holds without a renewal
    python_preload: tuple = ()          # modules every program job's zygote imports first
    python_env: dict = factory(dict)    # variables of every program job, set in its zygote too
    python_start: str = "zygote"        # how program jobs start unless they say: "zygote" or "spawn"


def plain(item) -> dict:
    """A record as plain JSON-able data (enums as their values), as the protocol sends it."""
    values = {name: getattr(item, name) for name in fields(item)}
    return {k: v.value if isinstance(v, Enum) else v for k, v in values.items()}


# ---------------------------------------------------------------- values other modules check

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def show_value(value: object, limit: int = 40) -> str:
    """repr() for error messages, shortened so huge input cannot flood a log line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


MAX_ARG_BYTES = 128 * 1024    # Linux MAX_ARG_STRLEN: the most one exec string may hold, NUL included


def exec_text_problem(text: str) -> str | None:
    """Why `text` can never be one string of an exec (an argument, or an environment
    NAME=VALUE), or None: a NUL byte, a character the file-system encoding cannot
    encode (a lone surrogate), or more than the kernel takes for one string."""
    if "\0" in text:
        return "contains a NUL byte"
    try:
        size = len(os.fsencode(text))
    except UnicodeEncodeError as e:
        char = text[e.start]
        kind = "lone surrogate" if "\ud800" <= char <= "\udfff" else "character"
        return f"cannot be encoded for exec: {kind} {char!r}"
    if size >= MAX_ARG_BYTES:
        return f"is {size} bytes; exec takes less than {MAX_ARG_BYTES // 1024} KiB per string"
    return None


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from a number of seconds or a string like "100ms", "30s", "5m", "1h30m"."""
    if isinstance(value, bool):
        raise SpecError(f"{what}: {show_value(value)} is not a duration; use seconds or e.g. '30s', '5m'")
    if isinstance(value, (int, float)):
        if not -1e12 < value < 1e12:  # also refuses nan, inf and integers beyond float range
            raise SpecError(f"{what}: {show_value(value)} is not a usable duration; use at most a year")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        parts = _DURATION_RE.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    raise SpecError(f"{what}: {show_value(value)} is not a duration; use seconds or e.g. '30s', '5m', '1h30m'")


def parse_signal(value: object, what: str) -> int:
    name = value.upper() if isinstance(value, str) else ""
    name = name if name.startswith("SIG") else "SIG" + name
    sig = getattr(signal, name, None) if name.isalnum() else None
    if isinstance(sig, signal.Signals):
        return int(sig)
    raise SpecError(f"{what}: {show_value(value)} is not a signal name; use e.g. \"TERM\", \"INT\", \"HUP\", \"QUIT\"")

