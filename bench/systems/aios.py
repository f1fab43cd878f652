"""AIOS as a system under test: `python3 simple_orchestrator.py` with AIOS_HOME set to a
fresh folder, started with the real interpreter (sys.executable) and stopped with
SIGTERM, exactly as README.md tells a user. It is ready when its control socket
(AIOS_HOME/aios.sock) answers a `ping`; its CLI is `sys.executable -m aios --home H`.
Reads `orchestrator.db` only to get the scheduled `due` of interval runs and to count
trigger rows and runs. `AiosPostgres` is the same daemon on the PostgreSQL store
(AIOS_DB: a fresh schema of the bench's server for each launch), a variant of AIOS
rather than a peer.
"""
from __future__ import annotations

import json
import re
import socket
import sqlite3
import sys
from collections.abc import Sequence
from contextlib import closing

from .. import ROOT, measure
from . import Job, System
from .probe import Asker

ENTRY = ROOT / "simple_orchestrator.py"
READY = re.compile(rb"daemon_(?:started|reexecuted) .*ready in ([0-9.]+) ms")
PING = b'{"op":"ping"}\n'


class Aios(System):
    name = "aios"
    interpreter = "python"
    features = frozenset({"always", "cli", "default_config", "interval", "aios", "store"})
    stop_how = "SIGTERM to the daemon (Ctrl-C does the same)"

    def argv(self) -> list[str]:
        return [sys.executable, str(ENTRY)]

    def process_env(self) -> dict[str, str]:
        env = dict(self.env)
        env.pop("AIOS_DB", None)
        env.update(AIOS_HOME=str(self.home), DEVICE_TAGS="")   # no tags: gpu-tagged examples stay off
        return env

    def cli(self, action: str, job: str | None = None) -> list[str]:
        base = [sys.executable, "-m", "aios", "--home", str(self.home)]
        return base + {"help": ["--help"], "status": ["status"], "restart": ["restart", str(job)],
                       "reexec": ["reexec"]}[action]

    def cli_cwd(self) -> str:
        return str(ROOT)          # where `python -m aios` finds the package, as in a clone

    @property
    def home(self):
        return self.workdir / "home"

    @property
    def socket_path(self) -> str:
        return str(self.home / "aios.sock")

    def describe(self) -> str:
        version = re.search(r'__version__ = "([^"]+)"', (ROOT / "aios" / "__init__.py").read_text())
        return f"AIOS {version[1] if version else '?'}: {sys.executable} {ENTRY.name}"

    settings_toml = ""      # put before the jobs' tables, e.g. '[logs]\ntimestamps = "local"\n' (the logs rows)

    def write_config(self, jobs: Sequence[Job] | None) -> None:
        """An aios.toml with one [jobs.NAME] table per job; None leaves the home empty,
        so that the daemon writes its default configuration (the seven example jobs)."""
        self.home.mkdir()
        if jobs is not None:
            (self.home / "aios.toml").write_text(self.settings_toml + "".join(_table(job) for job in jobs))

    def managed_pids(self) -> list[int]:
        """The jobs' processes: the daemon's children that exec'd, but its log writer."""
        return [pid for pid in super().managed_pids() if not self.is_log_writer(pid)]

    @staticmethod
    def is_log_writer(pid: int) -> bool:
        return b"aios.logwriter" in (measure.cmdline(pid) or b"")

    def readiness(self) -> Asker:
        return Asker(self.socket_path, PING, lambda reply: reply.endswith(b"\n") and b'"ok":true' in reply)

    def self_reported_ready_ms(self) -> float | None:
        """The daemon's own `ready in X ms`: timed inside the daemon after the interpreter
        started and imported AIOS, so not a whole-operation time."""
        found = READY.search(self.log_text())
        return float(found[1]) if found else None

    def count_events(self, name: str) -> int:
        """How many `name` events the daemon has logged on stderr since its launch."""
        return len(re.findall(rb" " + name.encode() + rb" ", self.log_text()))

    def query(self, sql: str, params=()) -> list[tuple]:
        """A read-only query of orchestrator.db (another process, as a user's script)."""
        uri = (self.home / "orchestrator.db").as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=5.0)) as db:
            return db.execute(sql, params).fetchall()

    def interval_lateness_ms(self, job: str) -> list[float]:
        """started - due of each run of `job`, in ms, oldest first (runs table)."""
        rows = self.query("SELECT started, due FROM runs WHERE job = ? AND due IS NOT NULL ORDER BY id", (job,))
        return [(started - due) * 1000.0 for started, due in rows]


class AiosPostgres(Aios):
    """AIOS on the PostgreSQL store. Each launch gets a new schema, created and migrated
    before the launch (untimed), as it is for a device joining an existing fleet."""

    name = "aios-pg"
    variant_of = "aios"
    features = frozenset({"store", "fleet"})

    def __init__(self, env: dict[str, str], scratch, postgres):
        super().__init__(env, scratch)
        self.postgres = postgres          # bench.pg.Postgres
        self.url: str | None = None

    def unavailable(self) -> str | None:
        return self.postgres.unavailable()

    def describe(self) -> str:
        where = "a pgserver of its own" if self.postgres.server is not None or self.postgres.error else "--pg"
        return f"{super().describe()} with AIOS_DB = a fresh schema on PostgreSQL ({where})"

    def write_config(self, jobs: Sequence[Job] | None) -> None:
        from aios.store import open_store

        self.url = self.postgres.fresh()
        open_store(self.url, "bench").close()
        super().write_config(jobs)

    def process_env(self) -> dict[str, str]:
        return {**super().process_env(), "AIOS_DB": self.url or ""}

    def query(self, sql: str, params=()) -> list[tuple]:
        """The same query on the schema (`?` placeholders, as for SQLite)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            return db.execute(sql.replace("?", "%s"), params).fetchall()


def ping(path: str, timeout: float = 2.0) -> dict | None:
    """The daemon's answer to one `ping` on a fresh connection, or None if none answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(PING)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
    except OSError:
        return None
    reply = json.loads(data)
    return reply.get("result") if reply.get("ok") else None


def _table(job: Job) -> str:
    lines = [f"[jobs.{job.name}]", f'type = "{job.kind}"']
    if job.kind == "interval":
        lines.append(f'every = "{job.every:g}s"')
    lines.append(f"command = {json.dumps(list(job.argv))}")
    return "\n".join(lines) + "\n\n"
