"""The PostgreSQL store: one database shared by a fleet of devices (psycopg 3).

Owns opening the database (migrating it with pg_schema when its version is behind), the
transactions, turning rows into records, and translating every psycopg error into a
one-line StoreError naming the operation, without the password: a lost connection is
opened again on the next call, so the engine's retries heal an outage. Loaded only for a
postgresql:// URL; imports aios.spec and the store package.
"""
from __future__ import annotations

import json
import threading
from contextlib import contextmanager, suppress

from ..spec import Command, Device, Event, JobState, Lease, Run, Status, Trigger, replace
from . import Store, StoreError

try:
    import psycopg
except ImportError:
    raise StoreError("fleet mode needs psycopg: pip install 'aios[fleet]'") from None

from . import pg_link, pg_schema, pg_sql as sql
from . import check_durable, check_run_id
from .rows import filtered, outcome_text, parse_kwargs, run as run_of, trigger

__all__ = ["PostgresStore"]

TIMEOUT = 5.0   # seconds: the longest a call waits for the database (see pg_link.connect)


class _Problem(Exception):
    """Why an operation cannot be done; _guard names the operation."""


class PostgresStore(Store):
    """The Store on a PostgreSQL database, seen from `device`. One autocommit connection
    for the verbs (explicit transactions where a verb writes twice, or in a batch), and a
    second one, opened on first use, that LISTENs for the changes of other connections."""

    fleet = True

    def __init__(self, url: str, device: str, *, password_file: str | None = None,
                 timeout: float = TIMEOUT):
        self.device, self.timeout = device, timeout
        self._url, self._password = pg_link.split_password(url)
        if self._password is None:
            self._password = pg_link.read_password(password_file)
        self.url = pg_link.redact(url)
        self._lock = threading.RLock()
        self._db, self._closed, self._durable = None, False, False
        with self._guard(f"opening state database {self.url}"):
            self._open()
        self._listener = pg_link.Listener(self._connect, pg_schema.channel(self._schema), self._own_pid)

    def __repr__(self) -> str:
        return f"PostgresStore({self.url!r}, device={self.device!r})"

    # ---- connections
    def _connect(self):
        return pg_link.connect(self._url, self._password, f"aios {self.device}", self.timeout)

    def _open(self) -> None:
        db = self._connect()
        try:
            self._schema, version = pg_schema.version(db)
            if self._schema is None:
                raise _Problem(f"{self.url}: no schema of the search_path exists; create it first")
            if version != pg_schema.SCHEMA_VERSION:   # a normal open reads this and no DDL
                self._migrate(db, version)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _migrate(self, db, version: int) -> None:
        if version > pg_schema.SCHEMA_VERSION:
            raise _Problem(f"the database {self.url} has schema version {version}, newer than "
                             f"this AIOS knows ({pg_schema.SCHEMA_VERSION}): upgrade AIOS")
        db.execute(pg_schema.LOCK)   # the other daemons starting now wait here
        try:
            with db.transaction():
                version = pg_schema.version(db)[1]   # perhaps migrated meanwhile
                db.execute(pg_schema.CREATE_VERSION_TABLE)
                for target in range(version + 1, pg_schema.SCHEMA_VERSION + 1):
                    for statement in pg_schema.MIGRATIONS[target - 1]:
                        db.execute(statement)
                    db.execute(pg_schema.RECORD_VERSION, (target,))
        finally:
            if pg_link.usable(db):
                db.execute(pg_schema.UNLOCK)

    def _connection(self):
        """The connection, opened again if it was lost (not inside a transaction)."""
        if self._closed:
            raise _Problem("the store is closed")
        if self._db is None or not pg_link.usable(self._db):
            if self._db is not None:
                self._db.close()
                self._db = None
            self._open()
        return self._db

    def _own_pid(self) -> int | None:
        return None if self._db is None or self._db.closed else self._db.info.backend_pid

    @contextmanager
    def _guard(self, what: str):
        """Re-raise a database error as a one-line StoreError naming `what`."""
        try:
            yield
        except (psycopg.Error, UnicodeError, _Problem) as exc:   # a StoreError is named already
            reason = ("no answer from the database within "
                      f"{self.timeout:g} s") if type(exc).__name__ == "_WaitTimeout" else exc
            raise StoreError(pg_link.scrub(f"{what} failed: {reason}", self._password)) from None

    @contextmanager
    def _transaction(self, what: str, durable: bool = False):
        """One BEGIN ... COMMIT, or a part of the transaction already open (a batch). Every
        commit is durable here (synchronous_commit); `durable` only keeps the contract that
        an acknowledgement never joins a batch opened without durable=True."""
        with self._lock, self._guard(what):
            db = self._connection()
            if db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                check_durable(what, durable, self._durable)
                yield db
                return
            self._durable = durable
            db.execute("BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                with suppress(psycopg.Error):   # the cause being raised matters more
                    if pg_link.usable(db):
                        db.execute("ROLLBACK")
                raise

    def _read(self, what: str, statement: str, params=()) -> list:
        return self._write(what, statement, params).fetchall()

    def _write(self, what: str, statement: str, params=(), durable: bool = False):
        """One statement, atomic by itself (autocommit: one round trip), or a part of the
        batch's transaction; returns the cursor. A `durable` one (an acknowledgement) may
        join only a batch opened with durable=True."""
        with self._lock, self._guard(what):
            db = self._connection()
            if durable and db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                check_durable(what, durable, self._durable)
            return db.execute(statement, params)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._listener.close()
            if self._db is not None:
                self._db.close()

    @contextmanager
    def batch(self, durable: bool = False):
        with self._transaction("writing a batch of changes", durable):
            yield self

    # ---- notifications
    def changed(self) -> bool:
        with self._lock, self._guard("checking the database for changes"):
            return bool(self._listener.drain(sync=True))

    def wakeup_fd(self) -> int:
        with self._lock, self._guard("listening for changes"):
            return self._listener.fd()

    def drain_wakeups(self) -> frozenset[str]:
        with self._lock, self._guard("listening for changes"):
            return self._listener.drain()

    # ---- job specs
    def save_specs(self, tables: dict[str, dict]) -> None:
        rows = [(self.device, name, position, json.dumps(table, default=str))
                for position, (name, table) in enumerate(tables.items())]
        with self._transaction("saving job specs") as db:
            db.execute(sql.DELETE_SPECS, (self.device,))
            db.cursor().executemany(sql.SAVE_SPEC, rows)

    def load_specs(self) -> dict[str, dict]:
        return dict(self._read("loading job specs", sql.LOAD_SPECS, (self.device,)))

    # ---- job state
    def load_states(self) -> dict[str, JobState]:
        rows = self._read("loading job states", sql.LOAD_STATES, (self.device,))
        return {row[0]: _state(row) for row in rows}

    def fleet_states(self) -> dict[str, dict[str, JobState]]:
        rows = self._read("loading every device's job states", sql.FLEET_STATES)
        found: dict[str, dict[str, JobState]] = {}
        for row in rows:
            found.setdefault(row[0], {})[row[1]] = _state(row[1:])
        return found

    def save_state(self, state: JobState) -> None:
        params = {name: getattr(state, name) for name in sql.STATE_FIELDS}
        params.update(device=self.device, status=state.status.value)
        self._write(f"saving state of {state.job!r}", sql.SAVE_STATE, params)

    def clear_states(self) -> None:
        self._write("clearing job states", sql.CLEAR_STATES, (self.device,))

    # ---- runs
    def start_run(self, run: Run) -> Run:
        run = replace(run, device=run.device or self.device)
        params = {name: getattr(run, name) for name in sql.RUN_FIELDS}
        params["outcome"] = outcome_text(run.outcome)
        cursor = self._write(f"recording the start of a run of {run.job!r}", sql.START_RUN, params)
        return replace(run, id=cursor.fetchone()[0])

    def finish_run(self, run: Run, finish_trigger: bool = False) -> None:
        check_run_id(run)
        outcome = outcome_text(run.outcome)
        with self._transaction(f"recording the end of run {run.id} of {run.job!r}") as db:
            db.execute(sql.END_RUN, (run.ended, run.exit_code, run.signal, outcome, run.id))
            if finish_trigger and run.trigger_id is not None:
                db.execute(sql.FINISH_TRIGGER, (outcome, run.ended, run.id, run.trigger_id))

    def set_run_pid(self, run_id: int, pid: int, pid_start: int | None) -> None:
        self._write(f"recording the process of run {run_id}", sql.SET_PID, (pid, pid_start, run_id))

    def open_runs(self) -> list[Run]:
        return [_run(row) for row in self._read("loading open runs", sql.OPEN_RUNS, (self.device,))]

    def recent_runs(self, job: str | None = None, limit: int = 50,
                    since: float | None = None) -> list[Run]:
        statement, params = filtered(sql.SELECT_RUNS, "ORDER BY started DESC, id DESC", limit,
                                     (("job = ?", job), ("started >= ?", since)), "%s")
        return [_run(row) for row in self._read("loading recent runs", statement, params)]

    def get_run(self, run_id: int) -> Run | None:
        rows = self._read(f"loading run {run_id}", f"{sql.SELECT_RUNS} WHERE id = %s", (run_id,))
        return _run(rows[0]) if rows else None

    def last_runs(self) -> dict[str, Run]:
        rows = self._read("loading the last runs", sql.LAST_RUNS, (self.device,))
        return {run.job: run for run in map(_run, rows)}

    # ---- triggers
    def add_trigger(self, job: str, args: tuple | list = (), kwargs: dict | None = None,
                    now: float = 0.0, target: str | None = None) -> Trigger:
        args, kwargs = tuple(args), dict(kwargs or {})
        values = (job, json.dumps(list(args)), json.dumps(kwargs), now, target)
        trigger_id = self._write(f"adding a trigger of {job!r}", sql.ADD_TRIGGER, values, durable=True).fetchone()[0]
        return Trigger(job=job, id=trigger_id, args=args, kwargs=kwargs, created=now, target=target)

    def get_trigger(self, trigger_id: int) -> Trigger | None:
        rows = self._read(f"loading trigger {trigger_id}", sql.GET_TRIGGER, (trigger_id,))
        if not rows:
            return None
        tid, job, args, kwargs, created, claimed, device, done, outcome, run_id, target = rows[0]
        return trigger(tid, job, args, kwargs, created, claimed=claimed, device=device,
                       done=bool(done), outcome=outcome, run_id=run_id, target=target)

    def pending_counts(self) -> dict[str, int]:
        return dict(self._read("counting pending triggers", sql.PENDING, {"device": self.device}))

    def pending_triggers(self, job: str | None = None, limit: int = 100) -> list[Trigger]:
        statement, params = filtered(sql.PENDING_TRIGGERS, "ORDER BY id", limit, (("job = ?", job),), "%s")
        return [trigger(*row) for row in self._read("loading pending triggers", statement, params)]

    def claim_trigger(self, job: str, now: float) -> Trigger | None:
        """Each claim is one statement; a claimed row that must be rejected is then marked
        done by this device (no other can see it meanwhile)."""
        params, what = {"job": job, "now": now, "device": self.device}, f"claiming a trigger of {job!r}"
        row = self._write(what, sql.CLAIM, params).fetchone()
        if row is None:
            return None
        trigger_id, raw_args, raw_kwargs, created, target = row
        return replace(trigger(trigger_id, job, raw_args, None, created, claimed=now, device=self.device,
                               target=target), kwargs=parse_kwargs(raw_kwargs))

    def finish_trigger(self, trigger_id: int, outcome: str, now: float) -> bool:
        cursor = self._write(f"finishing trigger {trigger_id}", sql.FINISH_TRIGGER,
                             (outcome, now, None, trigger_id))
        return cursor.rowcount == 1

    def drop_triggers(self, job: str, trigger_id: int | None, now: float) -> int:
        statement, params = sql.DROP_TRIGGERS, (now, job)
        if trigger_id is not None:
            statement, params = statement + " AND id = %s", params + (trigger_id,)
        return self._write(f"dropping triggers of {job!r}", statement, params, durable=True).rowcount

    def requeue_trigger(self, trigger_id: int) -> None:
        """Only a claim of this device is returned; a done trigger stays done."""
        self._write(f"returning trigger {trigger_id} to the queue", sql.REQUEUE, (self.device, trigger_id))

    def release_claims(self, keep: set[int] = frozenset()) -> int:
        cursor = self._write("releasing claimed triggers", sql.RELEASE, (self.device, sorted(keep)))
        return cursor.rowcount

    def clear_triggers(self) -> int:
        return self._write("clearing triggers", sql.CLEAR_TRIGGERS).rowcount

    # ---- events and meta
    def add_event(self, event: Event) -> int:
        params = {name: getattr(event, name) for name in sql.EVENT_FIELDS}
        params.update(device=event.device or self.device,
                      data=None if event.data is None else json.dumps(event.data, default=str))
        return self._write(f"recording event {event.name!r}", sql.ADD_EVENT, params).fetchone()[0]

    def recent_events(self, limit: int = 100, job: str | None = None,
                      after_id: int | None = None) -> list[Event]:
        statement, params = filtered(sql.SELECT_EVENTS, "ORDER BY id DESC", limit,
                                     (("job = ?", job), ("id > ?", after_id)), "%s")
        rows = self._read("loading events", statement, params)
        return [Event(**dict(zip(sql.EVENT_FIELDS, row))) for row in rows]

    def meta_get(self, key: str) -> str | None:
        rows = self._read(f"reading {key!r}", sql.META_GET, (key,))
        return rows[0][0] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        self._write(f"writing {key!r}", sql.META_SET, (key, value), durable=True)

    # ---- housekeeping
    def prune(self, before: float, limit: int = 1000) -> int:
        params = {"before": before, "limit": limit}
        with self._transaction("pruning old history") as db:
            return sum(db.execute(statement, params).rowcount for statement in sql.PRUNE)

    def check(self) -> list[str]:
        try:
            with self._lock, self._guard("reading the schema version"):
                version = pg_schema.version(self._connection())[1]
            missing = self._read("looking for the notify triggers", sql.MISSING_TRIGGERS,
                                 (list(pg_schema.NOTIFYING),))
        except StoreError as exc:
            return [str(exc)]
        problems = [f"{self.url}: schema version {version}, expected {pg_schema.SCHEMA_VERSION}"
                    ] if version != pg_schema.SCHEMA_VERSION else []
        if not pg_link.DEADLINES:
            problems.append(f"psycopg {psycopg.__version__} cannot bound a wait for the database: a "
                            "paused network can hold the daemon; pip install -U 'psycopg[binary]'")
        return problems + [f"{self.url}: table {name!r} has no notify trigger {name}_notify: "
                           "daemons will not wake on its changes" for (name,) in missing]

    # ---- fleet
    def heartbeat(self, device: str, tags, version: str, load: float) -> None:
        self._write(f"recording the heartbeat of {device!r}", sql.HEARTBEAT,
                    (device, sorted(tags), version, float(load)))

    def devices(self) -> list[Device]:
        rows = self._read("loading the fleet's devices", sql.DEVICES)
        return [Device(id=i, tags=tuple(tags), version=version, load=load, heartbeat=beat, age=age,
                       running=tuple(running), claimed=claimed)
                for i, tags, version, load, beat, age, running, claimed in rows]

    def reclaim_triggers(self, device: str, silent_for: float) -> int:
        return self._write(f"reclaiming the triggers of {device}", sql.RECLAIM,
                           {"device": device, "silent": silent_for}).rowcount

    def publish_jobs(self, tables: dict[str, dict], by_device: str) -> int:
        text = json.dumps(tables, default=str)
        with self._transaction("publishing the fleet's jobs") as db:
            db.execute(sql.PUBLISH_LOCK)   # publishers queue, so "equal to the newest" holds
            newest = db.execute(sql.NEWEST_JOBS).fetchone()
            if newest is not None and newest[1] == text:
                return newest[0]
            return db.execute(sql.PUBLISH, (text, by_device)).fetchone()[0]

    def fleet_jobs(self) -> tuple[int, dict[str, dict]]:
        rows = self._read("loading the fleet's jobs", sql.NEWEST_JOBS)
        return (rows[0][0], json.loads(rows[0][1])) if rows else (0, {})

    def acquire_lease(self, job: str, device: str, ttl: float) -> Lease | None:
        params = {"job": job, "device": device, "ttl": _ttl(ttl)}
        return _lease(self._write(f"acquiring the lease of {job!r}", sql.ACQUIRE_LEASE, params))

    def renew_lease(self, job: str, device: str, epoch: int, ttl: float) -> Lease | None:
        params = {"job": job, "device": device, "epoch": epoch, "ttl": _ttl(ttl)}
        return _lease(self._write(f"renewing the lease of {job!r}", sql.RENEW_LEASE, params))

    def release_lease(self, job: str, device: str, epoch: int) -> bool:
        cursor = self._write(f"releasing the lease of {job!r}", sql.RELEASE_LEASE, (job, device, epoch))
        return cursor.rowcount == 1

    def leases(self) -> list[Lease]:
        return [Lease(job=j, device=d, epoch=e, expires=x, ttl=t)
                for j, d, e, x, t in self._read("loading the leases", sql.LEASES)]

    def claim_slot(self, job: str, slot_key: str, device: str) -> bool:
        cursor = self._write(f"claiming slot {slot_key!r} of {job!r}", sql.CLAIM_SLOT, (job, slot_key, device))
        return cursor.fetchone() is not None

    def send_command(self, device: str, op: str, fields: dict, sender: str = "") -> int:
        params = (device, op, json.dumps(fields, default=str), sender or self.device)
        return self._write(f"sending {op!r} to {device!r}", sql.SEND_COMMAND, params).fetchone()[0]

    def take_commands(self, device: str, limit: int = 100) -> list[Command]:
        rows = self._write("taking commands", sql.TAKE_COMMANDS, (device, limit)).fetchall()
        return sorted(map(_command, rows), key=lambda command: command.id)

    def finish_command(self, command_id: int, outcome: str) -> bool:
        cursor = self._write(f"finishing command {command_id}", sql.FINISH_COMMAND, (outcome, command_id))
        return cursor.rowcount == 1

    def get_command(self, command_id: int) -> Command | None:
        rows = self._read(f"loading command {command_id}", sql.GET_COMMAND, (command_id,))
        return _command(rows[0]) if rows else None


# ---------------------------------------------------------------- rows

def _state(row: tuple) -> JobState:
    values = dict(zip(sql.STATE_FIELDS, row))
    values["status"] = Status(values["status"])
    return JobState(**values)


def _run(row: tuple) -> Run:
    return run_of(dict(zip(sql.RUN_FIELDS, row)))


def _ttl(ttl: float) -> float:
    if not 0 < ttl < 86400:
        raise ValueError(f"lease ttl {ttl!r}: use seconds between 0 and 86400")
    return float(ttl)


def _lease(cursor) -> Lease | None:
    row = cursor.fetchone()
    return None if row is None else Lease(job=row[0], device=row[1], epoch=row[2], expires=row[3], ttl=row[4])


def _command(row: tuple) -> Command:
    cid, device, op, fields, sender, created, taken, outcome = row
    return Command(id=cid, device=device, op=op, fields=fields, sender=sender, created=created,
                   taken=taken, outcome=outcome)
