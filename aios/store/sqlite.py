"""The embedded SQLite store: one database file per AIOS home, in WAL mode.

Owns the SQL and the conversion of rows into spec records (JobState, Run, Trigger,
Event); the schema and its migrations (run on open) are in sqlite_schema.py, the checks
before a file is opened, backup and restore in sqlite_file.py. Every sqlite3.Error leaves
as a one-line StoreError naming the operation; a failed write transaction is rolled back.
Once SQLite reports the file damaged (or check() finds it so), the store refuses every
later write with DamagedDatabase: what it would write could only be lost again by the
restore that repairs the file. Other processes may insert rows into `triggers` directly,
as they did with the original one-file orchestrator. Only modules under aios/store/
import sqlite3; this one imports only aios.spec and the store package.

Durability. WAL mode; a transaction commits with synchronous = NORMAL (atomic, and it
survives the process's crash; a power loss may undo the last few), except the
acknowledgements (add_trigger, drop_triggers, meta_set, a batch(durable=True)), which
commit with synchronous = FULL: their WAL frames are synced before they return, so an
acknowledged trigger survives a power loss. That is one device flush per acknowledgement.
`python3 -m bench.store` (5,000 add_trigger calls; ext4 on a 2-core VM whose disk other
work shares): 4,287 acknowledgements/s (p50 192 us) against 22,538/s (29 us) with NORMAL,
61,202/s grouped 100 per batch(durable=True). Through the daemon (`python3 -m bench
--only triggers_socket`: one client awaiting each reply) 1,401/s against 3,404/s before
while the disk was quiet, but 236/s (p50 4 ms) while other processes wrote to it: the
flush waits for theirs. Acknowledgements that arrive together can share one flush in a
batch(durable=True) (a group commit).

Pruning walks indexes from the oldest rows, `limit` rows per table per step: on a 1 GB
database (2 M runs, 2 M triggers, 4 M events) a step of 1,000 took 4 ms (p50), 31 ms at
most (an automatic checkpoint), where one DELETE per table for a tenth of it took 1.7 s.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager, suppress

from ..spec import Event, JobState, Run, Trigger, replace
from . import BadDatabase, DamagedDatabase, Store, StoreError, check_durable, check_run_id, sqlite_file
from .sqlite_file import guard
from .rows import filtered, outcome_text, parse_args, parse_created, parse_kwargs
from .sqlite_rows import EVENT_FIELDS, RUN_FIELDS, STATE_FIELDS, event_of, run_of, state_of, trigger_of
from .sqlite_schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SqliteStore"]

BUSY_TIMEOUT_MS = 200   # fail fast on another process's lock; the daemon retries itself
_PRAGMAS = (f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = OFF")
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"   # epoch seconds, SQLite's clock


def _text(data: bytes) -> str:
    """TEXT as Python reads it: bytes that are not UTF-8 (another program's row) decode as
    the file system would, never as an error that stops every read of the queue."""
    return data.decode("utf-8", "surrogateescape")

# ---------------------------------------------------------------- statements

def _insert(into: str, columns: tuple) -> str:
    return f"{into} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"


_RUN_INSERT_FIELDS = tuple(name for name in RUN_FIELDS if name != "id")

_SAVE_STATE = _insert("INSERT OR REPLACE INTO job_state", ("device",) + STATE_FIELDS)
_LOAD_STATES = f"SELECT {', '.join(STATE_FIELDS)} FROM job_state WHERE device = ?"
_CLEAR_STATES = "DELETE FROM job_state WHERE device = ?"

_SELECT_RUNS = f"SELECT {', '.join(RUN_FIELDS)} FROM runs"
_START_RUN = _insert("INSERT INTO runs", _RUN_INSERT_FIELDS)
_SET_PID = "UPDATE runs SET pid = ?, pid_start = ? WHERE id = ?"
_END_RUN = "UPDATE runs SET ended = ?, exit_code = ?, signal = ?, outcome = ? WHERE id = ?"
_OPEN_RUNS = f"{_SELECT_RUNS} WHERE device = ? AND ended IS NULL ORDER BY id"
_LAST_RUNS = f"""{_SELECT_RUNS} WHERE id IN (
    SELECT (SELECT id FROM runs AS r WHERE r.job = j.job AND r.device = :device
            ORDER BY started DESC, id DESC LIMIT 1)
    FROM (SELECT DISTINCT job FROM runs WHERE device = :device) AS j)"""

_ADD_TRIGGER = "INSERT INTO triggers (job, args, kwargs, created, target) VALUES (?, ?, ?, ?, ?)"
_MINE = "(target IS NULL OR target = ?)"   # a trigger this device may claim
# Another program's row may hold a BLOB or bytes that are not UTF-8 anywhere: job names
# are read as text, and text is decoded as the file system would (_text).
_PENDING = ("SELECT CAST(job AS TEXT), COUNT(*) FROM triggers WHERE done = 0 AND claimed IS NULL "
            f"AND {_MINE} GROUP BY job")
_SELECT_TRIGGERS = ("SELECT id, CAST(job AS TEXT), args, kwargs, created, claimed, device, done, outcome, "
                    "run_id, target FROM triggers")
_GET_TRIGGER = f"{_SELECT_TRIGGERS} WHERE id = ?"
# The queue's partial index holds only pending rows: never a scan of the done ones.
_PENDING_TRIGGERS = f"{_SELECT_TRIGGERS} INDEXED BY triggers_queue WHERE done = 0 AND claimed IS NULL"
_DROP = ("UPDATE triggers SET done = 1, outcome = 'dropped', finished = ? "
         "WHERE job = ? AND done = 0 AND claimed IS NULL")
_OLDEST = ("SELECT id, args, kwargs, created, target FROM triggers "
           f"WHERE job = ? AND done = 0 AND claimed IS NULL AND {_MINE} ORDER BY id LIMIT 1")
_CLAIM = "UPDATE triggers SET claimed = ?, device = ? WHERE id = ?"
_FINISH_TRIGGER = ("UPDATE triggers SET done = 1, outcome = ?, finished = ?, "
                   "run_id = COALESCE(?, run_id) WHERE id = ? AND done = 0")
_RELEASE = ("UPDATE triggers SET claimed = NULL, device = NULL "
            "WHERE device = ? AND done = 0 AND claimed IS NOT NULL")
_REQUEUE = f"{_RELEASE} AND id = ?"
_CLEAR_TRIGGERS = "DELETE FROM triggers WHERE done = 0"

_ADD_EVENT = "INSERT INTO events (ts, device, job, name, message, data) VALUES (?, ?, ?, ?, ?, ?)"
_SELECT_EVENTS = f"SELECT {', '.join(EVENT_FIELDS)} FROM events"

_SAVE_SPEC = f"INSERT INTO jobs (name, spec, updated) VALUES (?, ?, {_NOW})"
_META_GET = "SELECT value FROM meta WHERE key = ?"
_META_SET = "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)"
# Each walks an index from its oldest row (runs_ended, triggers_finished, events_ts), so a
# step costs about `limit` rows however large the table is.
_PRUNE = tuple(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {old} LIMIT :limit)"
               for table, old in (("runs", "ended < :before"),
                                  ("triggers", "done <> 0 AND finished < :before"),
                                  ("events", "ts < :before")))


class SqliteStore(Store):
    """The Store on one SQLite file, seen from `device`. One connection in autocommit
    mode; writes run in BEGIN IMMEDIATE transactions that a batch() joins."""

    def __init__(self, path: str, device: str, *, force_new: bool = False):
        self.path, self.device = path, device
        self.moved_aside: str | None = None   # where force_new put a bad database file
        self._damaged: str | None = None      # set once SQLite found the file damaged
        self._lock = threading.RLock()
        self._durable = False                 # the open transaction commits with synchronous = FULL
        try:
            sqlite_file.prepare(path)
        except BadDatabase:
            if not force_new:
                raise
            with guard(f"moving {path} aside", path):
                self.moved_aside = sqlite_file.move_aside(path, "broken")
            sqlite_file.prepare(path)
        what = f"opening state database {path}"
        with self._guard(what):
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            with self._guard(what):
                self._setup()
        except BaseException:
            self._db.close()
            raise

    def _setup(self) -> None:
        self._db.text_factory = _text
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
                    MIGRATIONS[target - 1](db)
                    db.execute(f"PRAGMA user_version = {target}")

    def _pragma(self, name: str) -> int:
        return self._db.execute(f"PRAGMA {name}").fetchone()[0]

    @contextmanager
    def _guard(self, what: str):
        """sqlite_file.guard, and once SQLite finds the file damaged, no more writes: what
        is written after the damage would be lost by the restore that repairs it."""
        try:
            with guard(what, self.path):
                yield
        except BadDatabase as exc:
            self._damaged = exc.reason
            raise type(exc).at(self.path, exc.reason, "no more changes are written to it") from exc

    @contextmanager
    def _transaction(self, what: str, durable: bool = False):
        """One BEGIN IMMEDIATE ... COMMIT, or a part of the transaction already open. A
        durable one commits with synchronous = FULL: its WAL frames are on disk when it
        returns (SQLite's synchronous is per connection, and can change between transactions)."""
        if self._damaged is not None:
            raise DamagedDatabase.at(self.path, f"{self._damaged}; {what} was refused",
                                     "no more changes are written to it")
        with self._lock, self._guard(what):
            if self._db.in_transaction:
                check_durable(what, durable, self._durable)
                yield self._db
                return
            if durable:
                self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("BEGIN IMMEDIATE")
            self._durable = durable
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):   # the cause being raised matters more
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                raise
            finally:
                if durable:
                    with suppress(sqlite3.Error):   # failing, it stays FULL: slower, never less safe
                        self._db.execute("PRAGMA synchronous = NORMAL")

    def _read(self, what: str, sql: str, params=()) -> list:
        with self._guard(what):
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._guard(f"closing state database {self.path}"):
            self._db.close()

    @contextmanager
    def batch(self, durable: bool = False):
        with self._transaction("writing a batch of changes", durable):
            yield self

    def changed(self) -> bool:
        with self._guard("checking the state database for changes"):
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
        return {row[0]: state_of(row) for row in rows}

    def save_state(self, state: JobState) -> None:
        params = {name: getattr(state, name) for name in STATE_FIELDS}
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
        params["outcome"] = outcome_text(run.outcome)
        with self._transaction(f"recording the start of a run of {run.job!r}") as db:
            run_id = db.execute(_START_RUN, params).lastrowid
        return replace(run, id=run_id)

    def finish_run(self, run: Run, finish_trigger: bool = False) -> None:
        check_run_id(run)
        outcome = outcome_text(run.outcome)
        with self._transaction(f"recording the end of run {run.id} of {run.job!r}") as db:
            db.execute(_END_RUN, (run.ended, run.exit_code, run.signal, outcome, run.id))
            if finish_trigger and run.trigger_id is not None:
                db.execute(_FINISH_TRIGGER, (outcome, run.ended, run.id, run.trigger_id))

    def set_run_pid(self, run_id: int, pid: int, pid_start: int | None) -> None:
        with self._transaction(f"recording the process of run {run_id}") as db:
            db.execute(_SET_PID, (pid, pid_start, run_id))

    def open_runs(self) -> list[Run]:
        return [run_of(row) for row in self._read("loading open runs", _OPEN_RUNS, (self.device,))]

    def recent_runs(self, job: str | None = None, limit: int = 50,
                    since: float | None = None) -> list[Run]:
        sql, params = filtered(_SELECT_RUNS, "ORDER BY started DESC, id DESC", limit,
                               (("job = ?", job), ("started >= ?", since)))
        return [run_of(row) for row in self._read("loading recent runs", sql, params)]

    def get_run(self, run_id: int) -> Run | None:
        rows = self._read(f"loading run {run_id}", f"{_SELECT_RUNS} WHERE id = ?", (run_id,))
        return run_of(rows[0]) if rows else None

    def last_runs(self) -> dict[str, Run]:
        rows = self._read("loading the last runs", _LAST_RUNS, {"device": self.device})
        return {run.job: run for run in map(run_of, rows)}

    # ---- triggers
    def add_trigger(self, job: str, args: tuple | list = (), kwargs: dict | None = None,
                    now: float = 0.0, target: str | None = None) -> Trigger:
        args, kwargs = tuple(args), dict(kwargs or {})
        values = (job, json.dumps(list(args)), json.dumps(kwargs), now, target)
        with self._transaction(f"adding a trigger of {job!r}", durable=True) as db:
            trigger_id = db.execute(_ADD_TRIGGER, values).lastrowid
        return Trigger(job=job, id=trigger_id, args=args, kwargs=kwargs, created=now, target=target)

    def get_trigger(self, trigger_id: int) -> Trigger | None:
        rows = self._read(f"loading trigger {trigger_id}", _GET_TRIGGER, (trigger_id,))
        return trigger_of(rows[0]) if rows else None

    def pending_counts(self) -> dict[str, int]:
        return dict(self._read("counting pending triggers", _PENDING, (self.device,)))

    def claim_trigger(self, job: str, now: float) -> Trigger | None:
        with self._transaction(f"claiming a trigger of {job!r}") as db:
            row = db.execute(_OLDEST, (job, self.device)).fetchone()
            if row is None:
                return None
            trigger_id, raw_args, raw_kwargs, created, target = row
            db.execute(_CLAIM, (now, self.device, trigger_id))
        return Trigger(job=job, id=trigger_id, args=parse_args(raw_args), kwargs=parse_kwargs(raw_kwargs),
                       created=parse_created(created), claimed=now, device=self.device, target=target)

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

    def pending_triggers(self, job: str | None = None, limit: int = 100) -> list[Trigger]:
        sql, params = (f"{_PENDING_TRIGGERS} ORDER BY id LIMIT ?", (limit,)) if job is None else (
            f"{_PENDING_TRIGGERS} AND job = ? ORDER BY id LIMIT ?", (job, limit))
        return [trigger_of(row) for row in self._read("listing pending triggers", sql, params)]

    def drop_triggers(self, job: str, trigger_id: int | None, now: float) -> int:
        sql, params = (_DROP, (now, job)) if trigger_id is None else (
            f"{_DROP} AND id = ?", (now, job, trigger_id))
        with self._transaction(f"dropping triggers of {job!r}", durable=True) as db:
            return db.execute(sql, params).rowcount

    # ---- events
    def add_event(self, event: Event) -> int:
        data = None if event.data is None else json.dumps(event.data, default=str)
        values = (event.ts, event.device or self.device, event.job, event.name, event.message, data)
        with self._transaction(f"recording event {event.name!r}") as db:
            return db.execute(_ADD_EVENT, values).lastrowid

    def recent_events(self, limit: int = 100, job: str | None = None,
                      after_id: int | None = None) -> list[Event]:
        sql, params = filtered(_SELECT_EVENTS, "ORDER BY id DESC", limit,
                               (("job = ?", job), ("id > ?", after_id)))
        return [event_of(row) for row in self._read("loading events", sql, params)]

    # ---- home-wide facts
    def meta_get(self, key: str) -> str | None:
        rows = self._read(f"reading {key!r} from the meta table", _META_GET, (key,))
        return rows[0][0] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        with self._transaction(f"setting {key!r} in the meta table", durable=True) as db:
            db.execute(_META_SET, (key, value))

    # ---- housekeeping
    def prune(self, before: float, limit: int = 1000) -> int:
        params = {"before": before, "limit": limit}
        with self._transaction("pruning old runs, triggers and events") as db:
            return sum(db.execute(sql, params).rowcount for sql in _PRUNE)

    def check(self) -> list[str]:
        """On a connection of its own (the store stays usable meanwhile: run it on a thread
        for a large file). Problems found also stop every later write, as damage does."""
        if self.path == ":memory:" or self.path.startswith("file:"):
            with self._lock:
                problems = sqlite_file.quick_check(self._db)
        else:
            problems = sqlite_file.check_file(self.path)
        if problems and self._damaged is None:
            self._damaged = f"is damaged: {problems[0]}"
        return problems


# ---------------------------------------------------------------- statements, continued

