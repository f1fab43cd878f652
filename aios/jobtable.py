"""Turning one `[jobs.NAME]` table of aios.toml into a validated JobSpec.

`parse_job` checks the job's name, its type, which fields apply to that type and every
field's value, and raises `SpecError` with a one-line message naming the job, the field,
the bad value and what would be accepted. `parse_env`, `parse_start` and `parse_preload`
also check the [python] table's fields for config. Pure: no clocks, and no I/O but reading
the system's time zone database to check a job's `timezone`. Imports aios.spec, and
aios.cron when a job has a cron expression; must not import config, launch or anything
that acts.
"""
from __future__ import annotations

import re
from datetime import time as Clock

from .spec import NAME_RE, JobSpec, JobType, SpecError, exec_text_problem, parse_duration, parse_signal, show_value

_PROGRAM_RE = re.compile(r"([^:]+\.py):([A-Za-z_][A-Za-z0-9_]*)")
_PATH_PART_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_CATCH_UP = ("once", "skip", "all")
_RESTART = ("always", "on-failure")

_COMMON = {
    "type", "program", "command", "shell", "args", "kwargs", "tags", "enabled", "priority",
    "env", "cwd", "retries", "backoff", "backoff_factor", "backoff_max", "stop_signal",
    "stop_timeout", "min_uptime", "adopt", "user", "group", "groups", "umask", "control", "memory_max",
    "cpu_quota", "cpu_weight", "nice", "nofile", "ioclass", "env_file", "scope", "prefer", "local",
    "on_failure", "on_success", "reload_signal", "start", "preload",
}
_BY_TYPE = {
    JobType.ALWAYS: {"restart", "failed_cooldown", "instances"},
    JobType.DAILY: {"time", "cron", "days", "timezone", "catch_up", "catch_up_max", "timeout", "after"},
    JobType.INTERVAL: {"interval", "every", "catch_up", "catch_up_max", "timeout", "after"},
    JobType.RANDOM_DAILY: {"after", "before", "timezone", "catch_up", "catch_up_max", "timeout"},
    JobType.TRIGGER: {"max_parallel", "timeout", "after"},
    JobType.IDLE: {"idle_after", "cooldown", "timeout", "after"},
}
_ALL_FIELDS = _COMMON.union(*_BY_TYPE.values())
_DEFAULT_RETRIES = {JobType.ALWAYS: 5}


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise SpecError(
            f"job name {show_value(name)} is not valid: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit")
    return name


def parse_clock(value: object, what: str) -> Clock:
    """A local wall-clock time from "HH:MM" (or "HH:MM:SS")."""
    if isinstance(value, Clock):
        return value
    match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", value) if isinstance(value, str) else None
    if match:
        hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
        if hour < 24 and minute < 60 and second < 60:
            return Clock(hour, minute, second)
    raise SpecError(f"{what}: {show_value(value)} is not a time of day; use \"HH:MM\" from 00:00 to 23:59")


def parse_job(name: str, table: object) -> JobSpec:
    """Validate one `[jobs.NAME]` table; raise SpecError naming the first problem."""
    check_name(name)
    where = f"job {show_value(name)}"
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table of fields, got {show_value(table)}")
    job_type = _parse_type(where, table.get("type"))
    _check_fields(where, job_type, table)
    values = {"name": name, "type": job_type, **_parse_how(where, table)}
    values.update(_parse_python(where, table, values.get("program") is not None))
    values.update(_parse_common(where, job_type, table))
    values.update(_parse_timing(where, job_type, table))
    values.update(_parse_links(where, job_type, table))
    return JobSpec(**values)


def _parse_type(where: str, value: object) -> JobType:
    try:
        return JobType(value)
    except ValueError:
        choices = ", ".join(t.value for t in JobType)
        if value is None:
            raise SpecError(f"{where}: missing field 'type'; use one of {choices}") from None
        hint = _close(value, [t.value for t in JobType])
        raise SpecError(f"{where}: unknown type {show_value(value)}{hint}; use one of {choices}") from None


def _check_fields(where: str, job_type: JobType, table: dict) -> None:
    allowed = _COMMON | _BY_TYPE[job_type]
    for key in table:
        if key in allowed:
            continue
        if key in _ALL_FIELDS:
            raise SpecError(f"{where}: field {show_value(key)} does not apply to {job_type.value} jobs")
        raise SpecError(f"{where}: unknown field {show_value(key)}{_close(key, sorted(_ALL_FIELDS))}")


def _close(word: object, choices: list) -> str:
    import difflib  # only on the error path

    match = difflib.get_close_matches(str(word), choices, n=1)
    return f" (did you mean {show_value(match[0])}?)" if match else ""


def _parse_how(where: str, table: dict) -> dict:
    program, command = table.get("program"), table.get("command")
    if (program is None) == (command is None):
        raise SpecError(f"{where}: give exactly one of 'program' (\"file.py:func\") or 'command' (argv list)")
    shell = _typed(where, table, "shell", bool, False)
    if program is not None:
        return {"program": _parse_program(where, program), "shell": shell}
    if shell:
        if not isinstance(command, str) or not command.strip():
            raise SpecError(f"{where}: with shell = true, 'command' must be one non-empty string")
        _check_exec_text(where, "command", command)
        return {"command": (command,), "shell": True}
    if isinstance(command, str):
        raise SpecError(f"{where}: 'command' is a string; give an argv list like [\"sleep\", \"60\"] "
                        "or set shell = true")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise SpecError(f"{where}: 'command' must be a non-empty list of strings, got {show_value(command)}")
    for index, item in enumerate(command):
        _check_exec_text(where, f"command[{index}]", item)
    return {"command": tuple(command)}


def _check_exec_text(where: str, label: str, text: str) -> None:
    problem = exec_text_problem(text)
    if problem:
        raise SpecError(f"{where}: {label} {problem}; every string a job is started with must be "
                        "exec-able text")


def _parse_program(where: str, value: object) -> str:
    match = _PROGRAM_RE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise SpecError(f"{where}: program {show_value(value)} is not \"file.py:function\" (a file inside Programs/)")
    if any(part in ("", ".", "..") for part in match[1].split("/")):
        raise SpecError(f"{where}: program {show_value(value)} must stay inside Programs/ "
                        "(a relative path without '..')")
    if not all(_PATH_PART_RE.fullmatch(part) for part in match[1].split("/")):
        raise SpecError(f"{where}: program {show_value(value)}: use letters, digits, '_', '.', '-' and '/' "
                        "in the file path")
    return value


_MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
START_CHOICES = ("zygote", "spawn")


def _parse_python(where: str, table: dict, program: bool) -> dict:
    out = {}
    for key, parse in (("start", parse_start), ("preload", parse_preload)):
        if key in table:
            if not program:
                raise SpecError(f"{where}: {key} applies to program jobs (program = \"file.py:func\") only")
            out[key] = parse(f"{where}: {key}", table[key])
    return out


def parse_start(what: str, value: object) -> str:
    if value not in START_CHOICES:
        raise SpecError(f"{what} = {show_value(value)}; use \"zygote\" (forked from a preloaded interpreter) "
                        "or \"spawn\" (a fresh interpreter each run)")
    return value


def parse_preload(what: str, value: object) -> tuple:
    """A list of module names to import into a zygote, e.g. ["numpy", "email.parser"]."""
    if not isinstance(value, list) or len(value) > 64 or not all(
            isinstance(name, str) and len(name) <= 200 and _MODULE_RE.fullmatch(name) for name in value):
        raise SpecError(f"{what} = {show_value(value)} must be a list of at most 64 module names, "
                        "like [\"numpy\", \"email.parser\"]")
    return tuple(dict.fromkeys(value))


def _typed(where: str, table: dict, key: str, kind: type, default):
    value = table.get(key, default)
    if value is default:
        return value
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise SpecError(f"{where}: {key} = {show_value(value)} must be {_KIND_NAMES[kind]}")
    return value


_KIND_NAMES = {bool: "true or false", int: "an integer", str: "a string", list: "a list",
               dict: "a table"}


def _parse_common(where: str, job_type: JobType, table: dict) -> dict:
    out = {
        "args": _command_args(where, table),
        "kwargs": dict(_typed(where, table, "kwargs", dict, {})),
        "tags": _parse_tags(where, table.get("tags", [])),
        "enabled": _typed(where, table, "enabled", bool, True),
        "priority": _bounded_int(where, table, "priority", 0, -1000, 1000),
        "env": parse_env(where, table.get("env", {})),
        "cwd": _exec_path(where, table, "cwd"),
        "retries": _bounded_int(where, table, "retries", _DEFAULT_RETRIES.get(job_type, 0), 0, 1000),
        "adopt": _typed(where, table, "adopt", bool, True),
        "local": _typed(where, table, "local", bool, False),
        **_parse_placement(where, job_type, table),
    }
    for key in ("backoff", "backoff_max", "stop_timeout", "min_uptime"):
        if key in table:
            out[key] = _positive_duration(where, key, table[key], allow_zero=key != "stop_timeout")
    if "backoff_factor" in table:
        factor = table["backoff_factor"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1 <= factor <= 100:
            raise SpecError(f"{where}: backoff_factor = {show_value(factor)} must be a number from 1 to 100")
        out["backoff_factor"] = float(factor)
    if "stop_signal" in table:
        out["stop_signal"] = parse_signal(table["stop_signal"], f"{where}: stop_signal")
    if job_type is JobType.ALWAYS:
        out.update(_parse_always(where, table))
    out.update(_parse_privileges(where, table))
    out.update(_parse_limits(where, table))
    return out


# ---------------------------------------------------------------- how the process runs
# Names are checked here; whether they exist on this machine is checked at config load
# (launch.identity), where the user database is.

_ACCOUNT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?) ?([KMGT]?)(?:i?B)?", re.IGNORECASE)
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?) ?%")
_IOCLASSES = ("realtime", "best-effort", "idle")
_INT_LIMITS = (("cpu_weight", 1, 10000), ("nice", -20, 19), ("nofile", 16, 1 << 20))
_UMASK_RE = re.compile(r"0?[0-7]{3}")


def _account(where: str, key: str, value: object) -> str:
    """A user or group: a name, or a numeric id (an integer, or a string of digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 32 - 1:
        return str(value)
    if isinstance(value, str) and _ACCOUNT_RE.fullmatch(value) and not (value.isdigit() and int(value) >= 2 ** 32 - 1):
        return value
    raise SpecError(f"{where}: {key} = {show_value(value)} is not a user or group; use a name like "
                    "\"www-data\" or a numeric id")


def _parse_privileges(where: str, table: dict) -> dict:
    out: dict = {}
    for key in ("user", "group"):
        if key in table:
            out[key] = _account(where, key, table[key])
    if "groups" in table:
        groups = table["groups"]
        if not isinstance(groups, list) or len(groups) > 64:
            raise SpecError(f"{where}: groups = {show_value(groups)} must be a list of at most 64 groups")
        out["groups"] = tuple(_account(where, "groups", g) for g in groups)
    if "umask" in table:
        umask = table["umask"]
        if not isinstance(umask, str) or not _UMASK_RE.fullmatch(umask):
            raise SpecError(f"{where}: umask = {show_value(umask)} must be an octal string like \"027\"")
        out["umask"] = int(umask, 8)
    out["control"] = _typed(where, table, "control", bool, False)
    return out


def _parse_placement(where: str, job_type: JobType, table: dict) -> dict:
    """Where a job runs in a fleet: scope = "device" (every eligible device runs its own
    copy) or "fleet" (one copy in the whole fleet, on a device holding its lease, the
    `prefer`red devices first)."""
    scope = table.get("scope", "device")
    if scope not in ("device", "fleet"):
        raise SpecError(f"{where}: scope = {show_value(scope)}; use \"device\" (a copy on every eligible "
                        "device) or \"fleet\" (one copy in the whole fleet)")
    if scope == "fleet" and job_type is JobType.IDLE:
        raise SpecError(f"{where}: idle jobs run when their own device is idle; scope = \"fleet\" "
                        "does not apply to them")
    prefer = table.get("prefer", [])
    if not isinstance(prefer, list) or not all(isinstance(d, str) and d.strip() for d in prefer):
        raise SpecError(f"{where}: prefer = {show_value(prefer)} must be a list of device ids like [\"gpu-box\"]")
    if prefer and scope != "fleet":
        raise SpecError(f"{where}: prefer applies to fleet jobs; add scope = \"fleet\"")
    return {"scope": scope, "prefer": tuple(prefer)}


def _parse_always(where: str, table: dict) -> dict:
    out = {}
    restart = table.get("restart", "always")
    if restart not in _RESTART:
        raise SpecError(f"{where}: restart = {show_value(restart)}; use \"always\" or \"on-failure\"")
    out["restart"] = restart
    if "failed_cooldown" in table:
        out["failed_cooldown"] = _positive_duration(where, "failed_cooldown", table["failed_cooldown"])
    return out


def _parse_tags(where: str, value: object) -> tuple:
    if not isinstance(value, list) or not all(isinstance(t, str) and NAME_RE.fullmatch(t) for t in value):
        raise SpecError(f"{where}: tags = {show_value(value)} must be a list of names like [\"gpu\", \"lab\"]")
    return tuple(value)


def parse_env(where: str, value: object) -> dict:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in value.items()):
        raise SpecError(f"{where}: env must be a table of string values, like {{ LANG = \"C.UTF-8\" }}")
    for key, text in value.items():
        _check_exec_text(where, f"env {show_value(key)}", f"{key}={text}")
    return dict(value)


def _exec_path(where: str, table: dict, key: str) -> str | None:
    path = _typed(where, table, key, str, None)
    if path is not None:
        _check_exec_text(where, key, path)
    return path


def _command_args(where: str, table: dict) -> tuple:
    """args as given; for command and shell jobs each string one exec argument."""
    args = tuple(_typed(where, table, "args", list, []))
    if table.get("program") is None:
        for index, arg in enumerate(args):
            if isinstance(arg, str):
                _check_exec_text(where, f"args[{index}]", arg)
    return args


def _bounded_int(where: str, table: dict, key: str, default: int, low: int, high: int) -> int:
    value = _typed(where, table, key, int, default)
    if not low <= value <= high:
        raise SpecError(f"{where}: {key} = {show_value(value)} must be an integer from {low} to {high}")
    return value


def _positive_duration(where: str, key: str, value: object, allow_zero: bool = True) -> float:
    seconds = parse_duration(value, f"{where}: {key}")
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds > 366 * 86400:
        bound = "zero or more" if allow_zero else "more than zero"
        raise SpecError(f"{where}: {key} = {show_value(value)} must be {bound} and at most a year")
    return seconds


def _parse_timing(where: str, job_type: JobType, table: dict) -> dict:
    out: dict = {}
    if "timeout" in table:
        out["timeout"] = _positive_duration(where, "timeout", table["timeout"], allow_zero=False)
    if "catch_up" in table:
        if table["catch_up"] not in _CATCH_UP:
            raise SpecError(f"{where}: catch_up = {show_value(table['catch_up'])}; use \"once\", \"skip\" or \"all\"")
        out["catch_up"] = table["catch_up"]
    if "catch_up_max" in table:
        out["catch_up_max"] = _bounded_int(where, table, "catch_up_max", 10, 1, 1000)
    if "timezone" in table:
        out["timezone"] = _parse_timezone(where, table["timezone"])
    parse = _TIMING_PARSERS.get(job_type)
    if parse:
        out.update(parse(where, table))
    return out


def _parse_daily(where: str, table: dict) -> dict:
    if ("time" in table) == ("cron" in table):
        raise SpecError(f"{where}: daily jobs need exactly one of time = \"HH:MM\" or cron = \"M H DOM MON DOW\"")
    if "cron" in table:
        if "days" in table:
            raise SpecError(f"{where}: days goes with time; with cron, name the days in its fifth field "
                            "(e.g. \"0 9 * * mon-fri\")")
        return {"cron": _parse_cron(where, table["cron"])}
    out = {"time": parse_clock(table["time"], f"{where}: time")}
    if "days" in table:
        out["days"] = _parse_days(where, table["days"])
    return out


def _parse_cron(where: str, value: object):
    from .cron import CronError, parse

    try:
        return parse(value)
    except CronError as exc:
        raise SpecError(f"{where}: cron = {show_value(value)}: {exc}") from None


_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _parse_days(where: str, value: object) -> tuple[int, ...]:
    """Weekdays (0 = Monday) from a list of names and ranges; a range runs forward
    through the week and may wrap (fri-mon)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise SpecError(f"{where}: days = {show_value(value)} must be a list of days like [\"mon\", \"wed-fri\"]")
    days: set[int] = set()
    for item in items:
        first, dash, last = item.partition("-") if isinstance(item, str) else (None, "", "")
        start, end = _weekday(where, item, first), _weekday(where, item, last if dash else first)
        days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    return tuple(sorted(days))


def _weekday(where: str, item: object, word: object) -> int:
    name = word.strip().lower() if isinstance(word, str) else None
    if name in _DAY_NAMES:
        return _DAY_NAMES.index(name)
    if name in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(name)
    hint = _close(name, list(_DAY_NAMES)) if name and "-" not in name else ""
    raise SpecError(f"{where}: days: {show_value(item)} is not a day{hint}; "
                    "use mon, tue, wed, thu, fri, sat, sun or a range like \"mon-fri\"")


def _parse_timezone(where: str, value: object) -> str:
    from zoneinfo import ZoneInfo

    if isinstance(value, str) and value and "\0" not in value:
        try:
            ZoneInfo(value)
            return value
        except (ValueError, KeyError, OSError):
            pass
    hint = _close_zone(value) if isinstance(value, str) and len(value) <= 64 else ""
    raise SpecError(f"{where}: timezone = {show_value(value)} is not a time zone{hint}; "
                    "use a name like \"Europe/Berlin\" or \"UTC\"")


def _close_zone(name: str) -> str:
    from zoneinfo import available_timezones  # only on the error path: it scans the database

    return _close(name, sorted(available_timezones()))


def _parse_random_daily(where: str, table: dict) -> dict:
    if "after" not in table or "before" not in table:
        raise SpecError(f"{where}: random_daily jobs need after = \"HH:MM\" and before = \"HH:MM\"")
    if isinstance(table["after"], list):
        raise SpecError(f"{where}: a random_daily job's after is the start of its window (\"HH:MM\"); "
                        "it cannot also wait for other jobs")
    after = parse_clock(table["after"], f"{where}: after")
    before = parse_clock(table["before"], f"{where}: before")
    if after >= before:
        raise SpecError(f"{where}: after = {show_value(table['after'])} is not earlier than before = "
                        f"{show_value(table['before'])}; the window must lie within one day")
    return {"after": after, "before": before}


def _parse_interval(where: str, table: dict) -> dict:
    if ("interval" in table) == ("every" in table):
        raise SpecError(f"{where}: interval jobs need exactly one of interval = MINUTES or every = \"30s\"")
    if "interval" in table:
        minutes = table["interval"]
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not -1e12 < minutes < 1e12:
            raise SpecError(f"{where}: interval = {show_value(minutes)} must be a number of minutes "
                            "(or use every = \"30s\")")
        seconds = minutes * 60.0
        shown = f"interval = {show_value(minutes)}"
    else:
        seconds = parse_duration(table["every"], f"{where}: every")
        shown = f"every = {show_value(table['every'])}"
    if not 0.01 <= seconds <= 366 * 86400:
        raise SpecError(f"{where}: {shown} must be more than zero (at least 10ms) and at most a year")
    return {"interval": seconds}


def _parse_idle(where: str, table: dict) -> dict:
    return {key: _positive_duration(where, key, table[key]) for key in ("idle_after", "cooldown")
            if key in table}


def _parse_trigger(where: str, table: dict) -> dict:
    return {"max_parallel": _bounded_int(where, table, "max_parallel", 1, 1, 1000)}


MAX_INSTANCES = 256
MAX_AFTER = 64


def _parse_links(where: str, job_type: JobType, table: dict) -> dict:
    """Fields that tie a job to others (checked against them in config: jobset) and the
    always job's copies and reload signal."""
    out: dict = {key: _job_ref(where, key, table[key]) for key in ("on_failure", "on_success") if key in table}
    if "after" in table and job_type is not JobType.RANDOM_DAILY:
        names = table["after"]
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_AFTER:
            raise SpecError(f"{where}: after = {show_value(names)} must be a list of 1 to {MAX_AFTER} job "
                            "names, like [\"backup\"]")
        out["after_jobs"] = tuple(dict.fromkeys(_job_ref(where, "after", name) for name in names))
    if "reload_signal" in table:
        out["reload_signal"] = parse_signal(table["reload_signal"], f"{where}: reload_signal")
    if "instances" in table:
        out["instances"] = _bounded_int(where, table, "instances", 1, 1, MAX_INSTANCES)
    return out


def _job_ref(where: str, key: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise SpecError(f"{where}: {key}: {show_value(value)} is not a job name; name a job of aios.toml, "
                        "like \"notify\"")
    return value


_TIMING_PARSERS = {
    JobType.DAILY: _parse_daily,
    JobType.RANDOM_DAILY: _parse_random_daily,
    JobType.INTERVAL: _parse_interval,
    JobType.IDLE: _parse_idle,
    JobType.TRIGGER: _parse_trigger,
}


def _parse_limits(where: str, table: dict) -> dict:
    out: dict = {key: _bounded_int(where, table, key, 0, low, high) for key, low, high in _INT_LIMITS
                 if key in table}
    if "memory_max" in table:
        out["memory_max"] = _memory(where, table["memory_max"])
    if "cpu_quota" in table:
        quota = table["cpu_quota"]
        match = _PERCENT_RE.fullmatch(quota) if isinstance(quota, str) else None
        if not match or not 1 <= float(match[1]) <= 100_000:
            raise SpecError(f"{where}: cpu_quota = {show_value(quota)} must be a percentage of one CPU "
                            "from \"1%\" to \"100000%\", like \"50%\" or \"200%\"")
        out["cpu_quota"] = float(match[1]) / 100
    if "ioclass" in table:
        if table["ioclass"] not in _IOCLASSES:
            raise SpecError(f"{where}: ioclass = {show_value(table['ioclass'])}; use \"realtime\", "
                            "\"best-effort\" or \"idle\"")
        out["ioclass"] = table["ioclass"]
    if "env_file" in table:
        out["env_file"] = _exec_path(where, table, "env_file")
    return out


def _memory(where: str, value: object) -> int:
    """Bytes from an integer or a size like "512M", "1.5G", "100MiB" (K = 1024)."""
    size = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and _SIZE_RE.fullmatch(value.strip()):
        number, unit = _SIZE_RE.fullmatch(value.strip()).groups()
        size = int(float(number) * 1024 ** " KMGT".index(unit.upper() or " "))
    if size is None or not 1 << 20 <= size <= 1 << 50:
        raise SpecError(f"{where}: memory_max = {show_value(value)} must be a size from 1M to 1P, "
                        "like \"512M\" or \"2G\" (or a number of bytes)")
    return size
