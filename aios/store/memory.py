"""An in-memory Store: the whole contract without a database, for fast tests of the
engine's rules.

Several MemoryStores share one MemoryDatabase as several connections (devices, processes)
share one SQLite file: each sees the others' commits; a batch() is atomic, invisible to the
others until it ends, and holds the write slot meanwhile (a write of another store waits
BUSY_TIMEOUT, then fails with "database is locked", as on SQLite); changed() reports the
others' commits. Arguments, kwargs, specs and event data are kept as the JSON text SQLite
keeps, so a test reads back what a real store would return. Nothing survives the process,
and nothing can be damaged: check() finds no problems.
Imports only aios.spec and the Store interface.
"""
from __future__ import annotations

import json
import threading
import weakref
from contextlib import contextmanager

from ..spec import Event, JobState, Outcome, Run, Status, Trigger, replace
from . import Store, StoreError, check_durable, check_run_id

__all__ = ["MemoryDatabase", "MemoryStore"]

BUSY_TIMEOUT = 0.2   # seconds a write waits for another store's batch, like SQLite's busy_timeout


class _Tables:
    """The rows of a database: the committed ones, or a batch's working copy."""

    __slots__ = ("specs", "states", "runs", "triggers", "finished", "events", "meta", "last_id")

    def __init__(self, source: _Tables | None = None):
        for name in self.__slots__:   # each row is a frozen record or text: shallow copies suffice
            setattr(self, name, dict(getattr(source, name)) if source else {})

    def new_id(self, table: str) -> int:
        """The next id of `table`: ids grow and are never reused (SQLite's AUTOINCREMENT)."""
        self.last_id[table] = self.last_id.get(table, 0) + 1
        return self.last_id[table]


class MemoryDatabase:
    """What MemoryStores share, as connections share a database file."""

    _named: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
    _naming = threading.Lock()

    def __init__(self):
        self.tables = _Tables()
        self.commits = 0                      # transactions committed, by every store
        self.writer: MemoryStore | None = None   # the store whose batch is open
        self.cond = threading.Condition(threading.RLock())

    @classmethod
    def named(cls, name: str) -> MemoryDatabase:
        """The database called `name` in this process, kept while a store of it is open."""
        with cls._naming:
            database = cls._named.get(name)
            if database is None:
                database = cls._named[name] = cls()
            return database


class MemoryStore(Store):
    """The Store on a MemoryDatabase (a new private one unless `shared` is given)."""

    def __init__(self, device: str, shared: MemoryDatabase | None = None):
        self.device = device
        self._db: MemoryDatabase | None = shared if shared is not None else MemoryDatabase()
        self._work: _Tables | None = None     # the working copy of this store's open batch
        self._dirty = False                   # the open batch wrote something
        self._durable = False                 # the open batch was opened durable
        self._seen, self._own = self._db.commits, 0   # for changed()

    # ---- transactions
    def _database(self, what: str) -> MemoryDatabase:
        if self._db is None:
            raise StoreError(f"{what} failed: the store is closed")
        return self._db

    def _wait_for_slot(self, db: MemoryDatabase, what: str) -> None:
        if not db.cond.wait_for(lambda: db.writer in (None, self), BUSY_TIMEOUT):
            raise StoreError(f"{what} failed: database is locked")

    @contextmanager
    def _reading(self, what: str):
        db = self._database(what)
        with db.cond:
            yield db.tables if self._work is None else self._work

    @contextmanager
    def _writing(self, what: str, durable: bool = False):
        """The tables to change. Each verb computes first and changes last, so a write
        outside a batch that raises has changed nothing."""
        db = self._database(what)
        if self._work is not None:
            check_durable(what, durable, self._durable)
            self._dirty = True
            yield self._work
            return
        with db.cond:
            self._wait_for_slot(db, what)
            yield db.tables
            db.commits, self._own = db.commits + 1, self._own + 1

    def close(self) -> None:
        self._db = None

    @contextmanager
    def batch(self, durable: bool = False):
        what = "writing a batch of changes"
        if self._work is not None:
            check_durable(what, durable, self._durable)
            yield self
            return
        db = self._database(what)
        with db.cond:
            self._wait_for_slot(db, what)
            db.writer, self._work, self._dirty, self._durable = self, _Tables(db.tables), False, durable
        try:
            yield self
            with db.cond:
                if self._dirty:
                    db.tables, db.commits, self._own = self._work, db.commits + 1, self._own + 1
        finally:
            with db.cond:
                db.writer, self._work = None, None
                db.cond.notify_all()

    def changed(self) -> bool:
        commits = self._database("checking the state database for changes").commits
        others = commits - self._seen - self._own
        self._seen, self._own = commits, 0
        return others > 0

    # ---- job specs
    def save_specs(self, tables: dict[str, dict]) -> None:
        texts = {name: json.dumps(table, default=str) for name, table in tables.items()}
        with self._writing("saving job specs") as t:
            t.specs = texts

    def load_specs(self) -> dict[str, dict]:
        with self._reading("loading job specs") as t:
            return {name: json.loads(text) for name, text in t.specs.items()}

    # ---- job state
    def load_states(self) -> dict[str, JobState]:
        with self._reading("loading job states") as t:
            return {job: state for (device, job), state in t.states.items() if device == self.device}

    def save_state(self, state: JobState) -> None:
        state = replace(state, status=Status(state.status), held=bool(state.held),
                        enabled=None if state.enabled is None else bool(state.enabled))
        with self._writing(f"saving state of {state.job!r}") as t:
            t.states[(self.device, state.job)] = state

    def clear_states(self) -> None:
        with self._writing("clearing job states") as t:
            t.states = {key: s for key, s in t.states.items() if key[0] != self.device}

    # ---- runs
    def start_run(self, run: Run) -> Run:
        run = replace(run, device=run.device or self.device, outcome=_outcome(run.outcome))
        with self._writing(f"recording the start of a run of {run.job!r}") as t:
            run = replace(run, id=t.new_id("runs"))
            t.runs[run.id] = run
        return run

    def finish_run(self, run: Run, finish_trigger: bool = False) -> None:
        check_run_id(run)
        outcome = _outcome(run.outcome)
        with self._writing(f"recording the end of run {run.id} of {run.job!r}") as t:
            if run.id in t.runs:
                t.runs[run.id] = replace(t.runs[run.id], ended=run.ended, exit_code=run.exit_code,
                                         signal=run.signal, outcome=outcome)
            if finish_trigger and run.trigger_id is not None:
                _finish(t, run.trigger_id, None if outcome is None else outcome.value, run.ended, run.id)

    def set_run_pid(self, run_id: int, pid: int, pid_start: int | None) -> None:
        with self._writing(f"recording the process of run {run_id}") as t:
            if run_id in t.runs:
                t.runs[run_id] = replace(t.runs[run_id], pid=pid, pid_start=pid_start)

    def open_runs(self) -> list[Run]:
        with self._reading("loading open runs") as t:
            return [r for r in t.runs.values() if r.device == self.device and r.ended is None]

    def recent_runs(self, job: str | None = None, limit: int = 50,
                    since: float | None = None) -> list[Run]:
        with self._reading("loading recent runs") as t:
            runs = [r for r in t.runs.values() if (job is None or r.job == job)
                    and (since is None or r.started >= since)]
        return _first(sorted(runs, key=lambda r: (r.started, r.id), reverse=True), limit)

    def get_run(self, run_id: int) -> Run | None:
        with self._reading(f"loading run {run_id}") as t:
            return t.runs.get(run_id)

    def last_runs(self) -> dict[str, Run]:
        last: dict[str, Run] = {}
        with self._reading("loading the last runs") as t:
            for run in t.runs.values():
                if run.device == self.device and (run.job not in last or (
                        (run.started, run.id) > (last[run.job].started, last[run.job].id))):
                    last[run.job] = run
        return last

    # ---- triggers
    def add_trigger(self, job: str, args: tuple | list = (), kwargs: dict | None = None,
                    now: float = 0.0, target: str | None = None) -> Trigger:
        args, kwargs = tuple(args), dict(kwargs or {})
        row = Trigger(job=job, args=json.dumps(list(args)), kwargs=json.dumps(kwargs), created=now, target=target)
        with self._writing(f"adding a trigger of {job!r}", durable=True) as t:
            row = replace(row, id=t.new_id("triggers"))
            t.triggers[row.id] = row
        return Trigger(job=job, id=row.id, args=args, kwargs=kwargs, created=now, target=target)

    def get_trigger(self, trigger_id: int) -> Trigger | None:
        with self._reading(f"loading trigger {trigger_id}") as t:
            row = t.triggers.get(trigger_id)
        return None if row is None else _decoded(row)

    def pending_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._reading("counting pending triggers") as t:
            for row in t.triggers.values():
                if _pending(row) and row.target in (None, self.device):
                    counts[row.job] = counts.get(row.job, 0) + 1
        return counts

    def claim_trigger(self, job: str, now: float) -> Trigger | None:
        with self._writing(f"claiming a trigger of {job!r}") as t:
            row = next((r for r in t.triggers.values()
                        if r.job == job and _pending(r) and r.target in (None, self.device)), None)
            if row is None:
                return None
            row = t.triggers[row.id] = replace(row, claimed=now, device=self.device)
        return _decoded(row)

    def finish_trigger(self, trigger_id: int, outcome: str, now: float) -> bool:
        with self._writing(f"finishing trigger {trigger_id}") as t:
            return _finish(t, trigger_id, outcome, now, None)

    def requeue_trigger(self, trigger_id: int) -> None:
        """Only a claim of this device is returned; a done trigger stays done."""
        self._release(f"returning trigger {trigger_id} to the queue", lambda r: r.id == trigger_id)

    def release_claims(self, keep: set[int] = frozenset()) -> int:
        return self._release("releasing claimed triggers", lambda r: r.id not in keep)

    def _release(self, what: str, which) -> int:
        with self._writing(what) as t:
            rows = [r for r in t.triggers.values() if r.device == self.device and not r.done
                    and r.claimed is not None and which(r)]
            for row in rows:
                t.triggers[row.id] = replace(row, claimed=None, device=None)
        return len(rows)

    def clear_triggers(self) -> int:
        with self._writing("clearing triggers") as t:
            kept = {i: r for i, r in t.triggers.items() if r.done}
            dropped, t.triggers = len(t.triggers) - len(kept), kept
        return dropped

    def pending_triggers(self, job: str | None = None, limit: int = 100) -> list[Trigger]:
        with self._reading("listing pending triggers") as t:
            rows = [r for r in t.triggers.values() if _pending(r) and (job is None or r.job == job)]
        return [_decoded(row) for row in _first(rows, limit)]

    def drop_triggers(self, job: str, trigger_id: int | None, now: float) -> int:
        with self._writing(f"dropping triggers of {job!r}", durable=True) as t:
            rows = [r for r in t.triggers.values() if r.job == job and _pending(r)
                    and trigger_id in (None, r.id)]
            for row in rows:
                _finish(t, row.id, "dropped", now, None)
        return len(rows)

    # ---- events
    def add_event(self, event: Event) -> int:
        data = None if event.data is None else json.dumps(event.data, default=str)
        event = replace(event, device=event.device or self.device, data=data)
        with self._writing(f"recording event {event.name!r}") as t:
            event = replace(event, id=t.new_id("events"))
            t.events[event.id] = event
        return event.id

    def recent_events(self, limit: int = 100, job: str | None = None,
                      after_id: int | None = None) -> list[Event]:
        with self._reading("loading events") as t:
            events = [e for e in t.events.values() if (job is None or e.job == job)
                      and (after_id is None or e.id > after_id)]
        return [replace(e, data=None if e.data is None else json.loads(e.data))
                for e in _first(events[::-1], limit)]

    # ---- home-wide facts
    def meta_get(self, key: str) -> str | None:
        with self._reading(f"reading {key!r} from the meta table") as t:
            return t.meta.get(key)

    def meta_set(self, key: str, value: str) -> None:
        with self._writing(f"setting {key!r} in the meta table", durable=True) as t:
            t.meta[key] = str(value)

    # ---- housekeeping
    def prune(self, before: float, limit: int = 1000) -> int:
        with self._writing("pruning old runs, triggers and events") as t:
            old = (_first([i for i, r in t.runs.items() if r.ended is not None and r.ended < before], limit),
                   _first([i for i, r in t.triggers.items() if r.done and _before(t.finished.get(i), before)], limit),
                   _first([i for i, e in t.events.items() if e.ts < before], limit))
            for table, ids in zip((t.runs, t.triggers, t.events), old):
                for i in ids:
                    del table[i]
            for i in old[1]:
                t.finished.pop(i, None)
        return sum(map(len, old))

    def check(self) -> list[str]:
        self._database("checking the state database")
        return []


# ---------------------------------------------------------------- rows

def _outcome(outcome) -> Outcome | None:
    return None if outcome is None else Outcome(outcome)


def _first(items: list, limit: int) -> list:
    """SQL's LIMIT: a negative limit is no limit."""
    return items if limit < 0 else items[:limit]


def _before(moment: float | None, before: float) -> bool:
    return moment is not None and moment < before


def _pending(row: Trigger) -> bool:
    return not row.done and row.claimed is None


def _decoded(row: Trigger) -> Trigger:
    """A stored trigger row (args and kwargs as JSON text) as a fresh Trigger."""
    return replace(row, args=tuple(json.loads(row.args)), kwargs=json.loads(row.kwargs))


def _finish(t: _Tables, trigger_id: int, outcome: str | None, now: float | None,
            run_id: int | None) -> bool:
    """Mark a trigger done unless it is done already (then False)."""
    row = t.triggers.get(trigger_id)
    if row is None or row.done:
        return False
    t.triggers[trigger_id] = replace(row, done=True, outcome=outcome,
                                     run_id=row.run_id if run_id is None else run_id)
    t.finished[trigger_id] = now
    return True
