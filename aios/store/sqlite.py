"""The embedded SQLite store: one database file per AIOS home, in WAL mode.

Owns the schema (versioned with PRAGMA user_version, migrated in place on open), the
SQL, and the conversion of rows into spec records (JobState, Run, Trigger, Event).
Only modules under aios/store/ import sqlite3; this one imports only aios.spec and
the Store interface. Every sqlite3.Error leaves as a one-line StoreError naming the
operation; a failed write transaction is rolled back. Other processes may insert rows
into `triggers` directly, as they did with the original one-file orchestrator.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager, suppress

from ..spec import Event, JobState, Run, Status, Trigger, fields, replace
from . import Store, StoreError
from .rows import REJECTED_KWARGS, outcome_text as _outcome_text
from .rows import filtered, parse_kwargs as _parse_kwargs, require_id, run as _run_of, trigger as _trigger

__all__ = ["SqliteStore"]

BUSY_TIMEOUT_MS = 200   # fail fast on another process's lock; the daemon retries itself
_PRAGMAS = (f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = OFF")
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"   # epoch seconds, SQLite's clock

# ---------------------------------------------------------------- schema, version 1

_SCHEMA_V1 = (
    "CREATE TABLE IF NOT EXISTS jobs (name TEXT PRIMARY KEY, spec TEXT NOT NULL, updated REAL)",
    """CREATE TABLE IF NOT EXISTS job_state (
        device TEXT NOT NULL, job TEXT NOT NULL, status TEXT NOT NULL, why TEXT,
        since REAL, pid INTEGER, run_id INTEGER, attempts INTEGER, restarts INTEGER,
        next_due REAL, last_slot REAL, draw_day TEXT, draw_at REAL, enabled INTEGER,
        held INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (device, job))""",
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, device TEXT,
        attempt INTEGER, trigger_id INTEGER, due REAL, pid INTEGER, pid_start INTEGER,
        started REAL, ended REAL, exit_code INTEGER, signal INTEGER, outcome TEXT)""",
    """CREATE TABLE IF NOT EXISTS triggers (
        id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, args TEXT DEFAULT '[]',
        kwargs TEXT DEFAULT '{}', created TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        done INTEGER NOT NULL DEFAULT 0, claimed REAL, device TEXT, outcome TEXT,
        finished REAL, run_id INTEGER)""",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, device TEXT, job TEXT, name TEXT,
        message TEXT)""",
    "CREATE INDEX IF NOT EXISTS runs_job_started ON runs (job, started)",
    "CREATE INDEX IF NOT EXISTS runs_open ON runs (device) WHERE ended IS NULL",
    "CREATE INDEX IF NOT EXISTS runs_started ON runs (started)",
    "CREATE INDEX IF NOT EXISTS triggers_queue ON triggers (job, id) "
    "WHERE done = 0 AND claimed IS NULL",
    "CREATE INDEX IF NOT EXISTS events_ts ON events (ts)",
)
# What an original-style triggers(id, job, args, kwargs, created, done) table lacks;
# ALTER TABLE cannot add a CURRENT_TIMESTAMP default, so `created` comes without one.
_TRIGGER_COLUMNS = (
    ("args", "TEXT DEFAULT '[]'"), ("kwargs", "TEXT DEFAULT '{}'"), ("created", "TIMESTAMP"),
    ("done", "INTEGER NOT NULL DEFAULT 0"), ("claimed", "REAL"), ("device", "TEXT"),
    ("outcome", "TEXT"), ("finished", "REAL"), ("run_id", "INTEGER"),
)


def _migrate_to_v1(db: sqlite3.Connection) -> None:
    """Create the schema, first extending an original triggers table in place."""
    original = {row[1] for row in db.execute("PRAGMA table_info(triggers)")}
    if original and not {"id", "job"} <= original:
        raise StoreError("the existing table 'triggers' has no 'id' or 'job' column; "
                         "rename it or use another database file")
    for name, declaration in _TRIGGER_COLUMNS:
        if original and name not in original:
            db.execute(f"ALTER TABLE triggers ADD COLUMN {name} {declaration}")
    for sql in _SCHEMA_V1:
        db.execute(sql)
    db.execute("UPDATE triggers SET done = 0 WHERE done IS NULL")   # original rows


_MIGRATIONS = (_migrate_to_v1,)   # _MIGRATIONS[n] takes user_version n to n + 1
SCHEMA_VERSION = len(_MIGRATIONS)

# ---------------------------------------------------------------- statements

def _insert(into: str, columns: tuple) -> str:
    return f"{into} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"


# What this schema stores: a run's lease epoch exists only in fleets (PostgreSQL).
_STATE_FIELDS = tuple(name for name in fields(JobState) if name not in ("slot_boot", "boot_id"))
_RUN_FIELDS = tuple(name for name in fields(Run) if name != "epoch")
_EVENT_FIELDS = tuple(name for name in fields(Event) if name != "data")
_RUN_INSERT_FIELDS = tuple(name for name in _RUN_FIELDS if name != "id")

_SAVE_STATE = _insert("INSERT OR REPLACE INTO job_state", ("device",) + _STATE_FIELDS)
_LOAD_STATES = f"SELECT {', '.join(_STATE_FIELDS)} FROM job_state WHERE device = ?"
_CLEAR_STATES = "DELETE FROM job_state WHERE device = ?"

_SELECT_RUNS = f"SELECT {', '.join(_RUN_FIELDS)} FROM runs"
_START_RUN = _insert("INSERT INTO runs", _RUN_INSERT_FIELDS)
_SET_PID = "UPDATE runs SET pid = ?, pid_start = ? WHERE id = ?"
_END_RUN = "UPDATE runs SET ended = ?, exit_code = ?, signal = ?, outcome = ? WHERE id = ?"
_OPEN_RUNS = f"{_SELECT_RUNS} WHERE device = ? AND ended IS NULL ORDER BY id"
_LAST_RUNS = f"""{_SELECT_RUNS} WHERE id IN (
    SELECT (SELECT id FROM runs AS r WHERE r.job = j.job AND r.device = :device
            ORDER BY started DESC, id DESC LIMIT 1)
    FROM (SELECT DISTINCT job FROM runs WHERE device = :device) AS j)"""

_ADD_TRIGGER = "INSERT INTO triggers (job, args, kwargs, created) VALUES (?, ?, ?, ?)"
_PENDING = ("SELECT job, COUNT(*) FROM triggers WHERE done = 0 AND claimed IS NULL "
            "GROUP BY job")
_GET_TRIGGER = ("SELECT id, job, args, kwargs, created, claimed, device, done, outcome, run_id "
                "FROM triggers WHERE id = ?")
_OLDEST = ("SELECT id, args, kwargs, created FROM triggers "
           "WHERE job = ? AND done = 0 AND claimed IS NULL ORDER BY id LIMIT 1")
_CLAIM = "UPDATE triggers SET claimed = ?, device = ? WHERE id = ?"
_FINISH_TRIGGER = ("UPDATE triggers SET done = 1, outcome = ?, finished = ?, "
                   "run_id = COALESCE(?, run_id) WHERE id = ? AND done = 0")
_RELEASE = ("UPDATE triggers SET claimed = NULL, device = NULL "
            "WHERE device = ? AND done = 0 AND claimed IS NOT NULL")
_REQUEUE = f"{_RELEASE} AND id = ?"
_CLEAR_TRIGGERS = "DELETE FROM triggers WHERE done = 0"

_ADD_EVENT = "INSERT INTO events (ts, device, job, name, message) VALUES (?, ?, ?, ?, ?)"
_SELECT_EVENTS = f"SELECT {', '.join(_EVENT_FIELDS)} FROM events"

_SAVE_SPEC = f"INSERT INTO jobs (name, spec, updated) VALUES (?, ?, {_NOW})"
_PRUNE = (
    "DELETE FROM runs WHERE ended IS NOT NULL AND ended < ?",
    "DELETE FROM triggers WHERE done <> 0 AND finished < ?",
    "DELETE FROM events WHERE ts < ?",
)


class SqliteStore(Store):
    """The Store on one SQLite file, seen from `device`. One connection in autocommit
    mode; writes run in BEGIN IMMEDIATE transactions that a batch() joins."""

    def __init__(self, path: str, device: str):
        self.path, self.device = path, device
        self._lock = threading.RLock()
        what = f"opening state database {path}"
        with _guard(what):
            _create_private(path)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            with _guard(what):
                self._setup()
        except BaseException:
            self._db.close()
            raise

    def _setup(self) -> None:
        for pragma in _PRAGMAS:
            self._db.execute(pragma)
        version = self._pragma("user_version")
        if version != SCHEMA_VERSION:   # the usual open reads one pragma and no DDL
            self._migrate(version)
        self._data_version = self._pragma("data_version")

    def _migrate(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state database {self.path} has schema version {version}, newer than this "
                f"AIOS knows ({SCHEMA_VERSION}): upgrade AIOS")
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction(f"migrating {self.path} to schema version {target}") as db:
                if self._pragma("user_version") < target:   # not done by another process
                    _MIGRATIONS[target - 1](db)
                    db.execute(f"PRAGMA user_version = {target}")

    def _pragma(self, name: str) -> int:
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    @contextmanager
    def _transaction(self, what: str):
        """One BEGIN IMMEDIATE ... COMMIT, or a part of the transaction already open."""
        with self._lock, _guard(what):
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):   # the cause being raised matters more
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                raise

    def _read(self, what: str, sql: str, params=()) -> list:
        with _guard(what):
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with _guard(f"closing state database {self.path}"):
            self._db.close()

    @contextmanager
    def batch(self):
        with self._transaction("writing a batch of changes"):
            yield self

    def changed(self) -> bool:
        with _guard("checking the state database for changes"):
            version = self._pragma("data_version")
        changed, self._data_version = version != self._data_version, version
        return changed

    # ---- job specs
    def save_specs(self, tables: dict[str, dict]) -> None:
        rows = [(name, json.dumps(table, default=str)) for name, table in tables.items()]
        with self._transaction("saving job specs") as db:
            db.execute("DELETE FROM jobs")
            db.executemany(_SAVE_SPEC, rows)

    def load_specs(self) -> dict[str, dict]:
        rows = self._read("loading job specs", "SELECT name, spec FROM jobs ORDER BY rowid")
        return {name: json.loads(spec) for name, spec in rows}

    # ---- job state
    def load_states(self) -> dict[str, JobState]:
        rows = self._read("loading job states", _LOAD_STATES, (self.device,))
        return {row[0]: _state(row) for row in rows}

    def save_state(self, state: JobState) -> None:
        params = {name: getattr(state, name) for name in _STATE_FIELDS}
        params.update(device=self.device, status=state.status.value,
                      enabled=None if state.enabled is None else int(state.enabled))
        with self._transaction(f"saving state of {state.job!r}") as db:
            db.execute(_SAVE_STATE, params)

    def clear_states(self) -> None:
        with self._transaction("clearing job states") as db:
            db.execute(_CLEAR_STATES, (self.device,))

    # ---- runs
    def start_run(self, run: Run) -> Run:
        run = replace(run, device=run.device or self.device)
        params = {name: getattr(run, name) for name in _RUN_INSERT_FIELDS}
        params["outcome"] = _outcome_text(run.outcome)
        with self._transaction(f"recording the start of a run of {run.job!r}") as db:
            run_id = db.execute(_START_RUN, params).lastrowid
        return replace(run, id=run_id)

    def finish_run(self, run: Run, finish_trigger: bool = False) -> None:
        require_id(run)
        outcome = _outcome_text(run.outcome)
        with self._transaction(f"recording the end of run {run.id} of {run.job!r}") as db:
            db.execute(_END_RUN, (run.ended, run.exit_code, run.signal, outcome, run.id))
            if finish_trigger and run.trigger_id is not None:
                db.execute(_FINISH_TRIGGER, (outcome, run.ended, run.id, run.trigger_id))

    def set_run_pid(self, run_id: int, pid: int, pid_start: int | None) -> None:
        with self._transaction(f"recording the process of run {run_id}") as db:
            db.execute(_SET_PID, (pid, pid_start, run_id))

    def open_runs(self) -> list[Run]:
        return [_run(row) for row in self._read("loading open runs", _OPEN_RUNS, (self.device,))]

    def recent_runs(self, job: str | None = None, limit: int = 50,
                    since: float | None = None) -> list[Run]:
        sql, params = filtered(_SELECT_RUNS, "ORDER BY started DESC, id DESC", limit,
                               (("job = ?", job), ("started >= ?", since)))
        return [_run(row) for row in self._read("loading recent runs", sql, params)]

    def get_run(self, run_id: int) -> Run | None:
        rows = self._read(f"loading run {run_id}", f"{_SELECT_RUNS} WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def last_runs(self) -> dict[str, Run]:
        rows = self._read("loading the last runs", _LAST_RUNS, {"device": self.device})
        return {run.job: run for run in map(_run, rows)}

    # ---- triggers
    def add_trigger(self, job: str, args: tuple | list = (), kwargs: dict | None = None,
                    now: float = 0.0) -> Trigger:
        args, kwargs = tuple(args), dict(kwargs or {})
        values = (job, json.dumps(list(args)), json.dumps(kwargs), now)
        with self._transaction(f"adding a trigger of {job!r}") as db:
            trigger_id = db.execute(_ADD_TRIGGER, values).lastrowid
        return Trigger(job=job, id=trigger_id, args=args, kwargs=kwargs, created=now)

    def get_trigger(self, trigger_id: int) -> Trigger | None:
        rows = self._read(f"loading trigger {trigger_id}", _GET_TRIGGER, (trigger_id,))
        if not rows:
            return None
        tid, job, args, kwargs, created, claimed, device, done, outcome, run_id = rows[0]
        return _trigger(tid, job, args, kwargs, created, claimed=claimed, device=device,
                        done=bool(done), outcome=outcome, run_id=run_id)

    def pending_counts(self) -> dict[str, int]:
        return dict(self._read("counting pending triggers", _PENDING))

    def claim_trigger(self, job: str, now: float) -> Trigger | None:
        with self._transaction(f"claiming a trigger of {job!r}") as db:
            while True:
                row = db.execute(_OLDEST, (job,)).fetchone()
                if row is None:
                    return None
                trigger_id, raw_args, raw_kwargs, created = row
                if _parse_kwargs(raw_kwargs) is None:
                    db.execute(_FINISH_TRIGGER, (REJECTED_KWARGS, now, None, trigger_id))
                    continue
                db.execute(_CLAIM, (now, self.device, trigger_id))
                return _trigger(trigger_id, job, raw_args, raw_kwargs, created, claimed=now,
                                device=self.device)

    def finish_trigger(self, trigger_id: int, outcome: str, now: float) -> bool:
        with self._transaction(f"finishing trigger {trigger_id}") as db:
            return db.execute(_FINISH_TRIGGER, (outcome, now, None, trigger_id)).rowcount == 1

    def requeue_trigger(self, trigger_id: int) -> None:
        """Only a claim of this device is returned; a done trigger stays done."""
        with self._transaction(f"returning trigger {trigger_id} to the queue") as db:
            db.execute(_REQUEUE, (self.device, trigger_id))

    def release_claims(self, keep: set[int] = frozenset()) -> int:
        keep = sorted(keep)
        sql = _RELEASE + (f" AND id NOT IN ({', '.join('?' * len(keep))})" if keep else "")
        with self._transaction("releasing claimed triggers") as db:
            return db.execute(sql, (self.device, *keep)).rowcount

    def clear_triggers(self) -> int:
        with self._transaction("clearing triggers") as db:
            return db.execute(_CLEAR_TRIGGERS).rowcount

    # ---- events
    def add_event(self, event: Event) -> int:
        values = (event.ts, event.device or self.device, event.job, event.name, event.message)
        with self._transaction(f"recording event {event.name!r}") as db:
            return db.execute(_ADD_EVENT, values).lastrowid

    def recent_events(self, limit: int = 100, job: str | None = None,
                      after_id: int | None = None) -> list[Event]:
        sql, params = filtered(_SELECT_EVENTS, "ORDER BY id DESC", limit,
                               (("job = ?", job), ("id > ?", after_id)))
        rows = self._read("loading events", sql, params)
        return [Event(**dict(zip(_EVENT_FIELDS, row))) for row in rows]

    # ---- housekeeping
    def prune(self, before: float) -> int:
        with self._transaction("pruning old runs, triggers and events") as db:
            return sum(db.execute(sql, (before,)).rowcount for sql in _PRUNE)


# ---------------------------------------------------------------- files and rows

@contextmanager
def _guard(what: str):
    """Re-raise a sqlite3.Error (or OSError) as a one-line StoreError naming `what`."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"{what} failed: {exc}") from exc


def _create_private(path: str) -> None:
    """Create the parent folder and an empty database file that only its owner can read
    and write, whatever the umask. An existing file keeps its permissions."""
    if path == ":memory:" or path.startswith("file:"):
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, 0o600)   # SQLite gives the -wal and -shm files the same mode
    finally:
        os.close(fd)


def _state(row: tuple) -> JobState:
    values = dict(zip(_STATE_FIELDS, row))
    values["status"] = Status(values["status"])
    values["enabled"] = None if values["enabled"] is None else bool(values["enabled"])
    values["held"] = bool(values["held"])
    return JobState(**values)


def _run(row: tuple) -> Run:
    return _run_of(dict(zip(_RUN_FIELDS, row)))
