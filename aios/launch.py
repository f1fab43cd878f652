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

from .spec import JobSpec, Settings, Trigger

RUNNER = str(Path(__file__).with_name("runner.py"))


def argv(spec: JobSpec, trigger: Trigger | None, home: Path) -> list[str]:
    args = list(spec.args) + list(trigger.args if trigger else ())
    if spec.program:
        kwargs = {**spec.kwargs, **(trigger.kwargs if trigger else {})}
        payload = json.dumps({"args": args, "kwargs": kwargs}, separators=(",", ":"))
        return [sys.executable, RUNNER, str(home / "Programs"), spec.program, payload]
    if spec.shell:
        return ["/bin/sh", "-c", spec.command[0], spec.name] + [_text(a) for a in args]
    return list(spec.command) + [_text(a) for a in args]


def _text(value) -> str:
    """A command-line argument from a JSON value: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def environment(spec: JobSpec, run_id: int | None, base: dict, home: Path, settings: Settings) -> dict:
    """The daemon's environment, the job's `env`, then what every job finds: AIOS_JOB,
    AIOS_RUN_ID, AIOS_DEVICE_ID, AIOS_HOME (and where the dashboard listens)."""
    env = dict(base)
    env.update(spec.env)
    env.update(AIOS_JOB=spec.name, AIOS_RUN_ID=str(run_id), AIOS_DEVICE_ID=settings.device_id,
               AIOS_HOME=str(home), AIOS_WEB_HOST=settings.web_host, AIOS_WEB_PORT=str(settings.web_port))
    if spec.program:
        env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def working_dir(spec: JobSpec, home: Path) -> str:
    return str(home / spec.cwd) if spec.cwd else str(home)
