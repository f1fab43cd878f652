"""AIOS as a system under test: `python3 simple_orchestrator.py` with AIOS_HOME set to a
fresh folder, started with the real interpreter (sys.executable) and stopped with
SIGTERM, exactly as README.md tells a user. Its ready signal today is the
`daemon_started ... ready in X ms` line on stderr (the control socket does not exist
yet). Reads `orchestrator.db` only to get the scheduled `due` of interval runs.
"""
from __future__ import annotations

import json
import re
import sqlite3
import sys
from collections.abc import Sequence
from contextlib import closing

from .. import ROOT
from . import Job, System

ENTRY = ROOT / "simple_orchestrator.py"
READY = re.compile(rb"daemon_started .*ready in ([0-9.]+) ms")


class Aios(System):
    name = "aios"
    interpreter = "python"
    features = frozenset({"always", "default_config", "interval"})

    def argv(self) -> list[str]:
        return [sys.executable, str(ENTRY)]

    def process_env(self) -> dict[str, str]:
        env = dict(self.env)
        env.pop("AIOS_DB", None)
        env.update(AIOS_HOME=str(self.home), DEVICE_TAGS="")   # no tags: gpu-tagged examples stay off
        return env

    @property
    def home(self):
        return self.workdir / "home"

    def describe(self) -> str:
        version = re.search(r'__version__ = "([^"]+)"', (ROOT / "aios" / "__init__.py").read_text())
        return f"AIOS {version[1] if version else '?'}: {sys.executable} {ENTRY.name}"

    def write_config(self, jobs: Sequence[Job] | None) -> None:
        """An aios.toml with one [jobs.NAME] table per job; None leaves the home empty,
        so that the daemon writes its default configuration (the seven example jobs)."""
        self.home.mkdir()
        if jobs is not None:
            (self.home / "aios.toml").write_text("".join(_table(job) for job in jobs))

    def is_ready(self) -> bool:
        return READY.search(self.log_text()) is not None

    def self_reported_ready_ms(self) -> float | None:
        """The daemon's own `ready in X ms`: timed inside the daemon after the interpreter
        started and imported AIOS, so not a whole-operation time."""
        found = READY.search(self.log_text())
        return float(found[1]) if found else None

    def interval_lateness_ms(self, job: str) -> list[float]:
        """started - due of each run of `job`, in ms, oldest first (runs table)."""
        uri = (self.home / "orchestrator.db").as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as db:
            rows = db.execute("SELECT started, due FROM runs WHERE job = ? AND due IS NOT NULL ORDER BY id",
                              (job,)).fetchall()
        return [(started - due) * 1000.0 for started, due in rows]


def _table(job: Job) -> str:
    lines = [f"[jobs.{job.name}]"]
    if job.every is None:
        lines.append('type = "always"')
    else:
        lines += ['type = "interval"', f'every = "{job.every:g}s"']
    lines.append(f"command = {json.dumps(list(job.argv))}")
    return "\n".join(lines) + "\n\n"
