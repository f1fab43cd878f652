"""How a run of a job becomes a process: its argv, environment and working directory.

Pure functions of the spec, the trigger and the daemon's facts; no process is started
here (supervisor does that). Arguments never pass through a shell: a `program` job gets
them as one JSON string for runner.py; a shell command gets them as "$1", "$2", ...
Imports only aios.spec.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .spec import MAX_ARG_BYTES, JobSpec, Settings, Trigger, exec_text_problem

RUNNER = str(Path(__file__).with_name("runner.py"))


def argv(spec: JobSpec, trigger: Trigger | None, home: Path) -> list[str]:
    args = list(spec.args) + list(trigger.args if trigger else ())
    if spec.program:
        return [sys.executable, RUNNER, str(home / "Programs"), spec.program, _payload(spec, trigger)]
    if spec.shell:
        return ["/bin/sh", "-c", spec.command[0], spec.name] + [_text(a) for a in args]
    return list(spec.command) + [_text(a) for a in args]


def _payload(spec: JobSpec, trigger: Trigger | None) -> str:
    """The one JSON argument of a program job (ASCII: NUL and surrogates come escaped)."""
    args = list(spec.args) + list(trigger.args if trigger else ())
    kwargs = {**spec.kwargs, **(trigger.kwargs if trigger else {})}
    return json.dumps({"args": args, "kwargs": kwargs}, separators=(",", ":"))


def _text(value) -> str:
    """A command-line argument from a JSON value: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def exec_problem(spec: JobSpec, trigger: Trigger | None = None) -> str | None:
    """Why a run of `spec` with `trigger`'s arguments can never be exec'd, in one line, or
    None if it can: check a trigger when it is submitted, and refuse it, never store it.

    A command or shell job gets each trigger argument as one argv string (a NUL byte, a
    lone surrogate or 128 KiB in one are refused: "argument 2 contains a NUL byte"); a
    program job gets them all as one JSON string, which escapes NUL and surrogates but
    must stay under 128 KiB. The spec's own strings were checked by parse_job."""
    if trigger is None:
        return None
    if spec.program:
        size = len(_payload(spec, trigger))
        if size >= MAX_ARG_BYTES:
            return (f"arguments are {size} bytes as JSON; a program job takes less than "
                    f"{MAX_ARG_BYTES // 1024} KiB (pass a file path instead)")
        return None
    for index, value in enumerate(trigger.args, 1):
        problem = exec_text_problem(_text(value))
        if problem:
            return f"argument {index} {problem}"
    return None


# What the daemon's own environment must not pass on: every AIOS_* variable (control
# variables such as AIOS_READY_FD and AIOS_REEXEC_FDS, the database URL; the ones a job
# needs are set below, per run) and systemd's per-service protocol variables (a job
# holding NOTIFY_SOCKET could tell systemd the daemon is ready or stopping).
_NOT_INHERITED = frozenset({"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                            "WATCHDOG_PID", "WATCHDOG_USEC"})


def inherited(base: dict) -> dict:
    """The part of the daemon's environment a job starts from."""
    return {k: v for k, v in base.items() if not k.startswith("AIOS_") and k not in _NOT_INHERITED}


def environment(spec: JobSpec, run_id: int | None, base: dict, home: Path, settings: Settings,
                token: str | None = None) -> dict:
    """The daemon's environment (less its own variables: `inherited`), the job's `env`,
    then what every job finds: AIOS_JOB, AIOS_RUN_ID, AIOS_DEVICE_ID, AIOS_HOME (and
    where the dashboard listens), and AIOS_RUN_TOKEN (`run_token`) when given, which the
    job's `env` cannot override."""
    env = inherited(base)
    env.update(spec.env)
    env.update(AIOS_JOB=spec.name, AIOS_RUN_ID=str(run_id), AIOS_DEVICE_ID=settings.device_id,
               AIOS_HOME=str(home), AIOS_WEB_HOST=settings.web_host, AIOS_WEB_PORT=str(settings.web_port))
    if token is not None:
        env[TOKEN_VAR] = token
    if spec.program:
        env.setdefault("PYTHONUNBUFFERED", "1")
    return env


TOKEN_VAR = "AIOS_RUN_TOKEN"


def run_token(secret: bytes, run_id: int | None) -> str:
    """The secret mark of one run, put in its environment as AIOS_RUN_TOKEN: a keyed
    BLAKE2b (a MAC, RFC 7693) of the run id under the home's secret (16 to 64 random
    bytes the daemon keeps to itself). After a crash, a process is a run's only if it
    carries that run's token: other users can copy every other variable, not this one."""
    if not 16 <= len(secret) <= 64:
        raise ValueError(f"the run secret must be 16 to 64 bytes, not {len(secret)}")
    try:
        from _blake2 import blake2b     # hashlib's own; importing hashlib loads OpenSSL (3-10 ms)
    except ImportError:
        from hashlib import blake2b
    return blake2b(f"aios run {run_id}".encode(), key=secret, digest_size=16).hexdigest()


def token_matches(secret: bytes, run_id: int | None, token: str | None) -> bool:
    """True if `token` (found in a process's environment) is run_id's own."""
    import hmac

    return token is not None and hmac.compare_digest(run_token(secret, run_id), token)


def working_dir(spec: JobSpec, home: Path) -> str:
    return str(home / spec.cwd) if spec.cwd else str(home)
