"""The Store interface: job specs, per-device job state, runs, the trigger queue, events,
and for fleets (PostgreSQL) devices, published jobs, leases, slots and routed commands.

Every backend (sqlite, postgres for fleets) implements these domain verbs with the
contracts in their docstrings; tests/test_store.py runs one contract suite on each, and
tests/test_store_fleet.py the fleet verbs on PostgreSQL. Only modules under store/ touch
a database driver. Imports only `aios.spec`; psycopg loads only for a postgresql:// URL.
"""
from __future__ import annotations

from contextlib import contextmanager
from ..spec import AiosError, Command, Device, Event, JobState, Lease, Run, Trigger

__all__ = ["Store", "StoreError", "FleetError", "BadDatabase", "EmptyDatabase", "NotADatabase",
           "DamagedDatabase", "ForeignDatabase", "open_store", "is_postgres_url", "WAKEUP_LOST"]

WAKEUP_LOST = frozenset({"*"})   # drain_wakeups(): the listening connection was lost


class StoreError(AiosError):
    """The state database could not be read or written."""


class FleetError(StoreError):
    """Fleet mode needs PostgreSQL: set [store] url = "postgresql://..." in aios.toml or AIOS_DB."""


class BadDatabase(StoreError):
    """The state database cannot be used as it is; `reason` says why, the message what to do."""

    reason = ""

    @classmethod
    def at(cls, path: str, reason: str, kept: str = "it was left as it is") -> BadDatabase:
        error = cls(f"state database {path} {reason}; {kept}: see `aios db check`, restore a "
                    "backup with `aios db restore BACKUP`, or start with --force-new-db to move "
                    "it aside and begin a new one")
        error.reason = reason
        return error


class EmptyDatabase(BadDatabase):
    """The state database file is empty (0 bytes)."""


class NotADatabase(BadDatabase):
    """The state database file is not an SQLite database."""


class DamagedDatabase(BadDatabase):
    """The state database is damaged (an integrity check failed, or SQLite found it malformed)."""


class ForeignDatabase(BadDatabase):
    """The state database holds another program's tables, not AIOS's."""


class Store:
    """Persistent state of one AIOS home. Times are epoch seconds (float)."""

    device: str
    moved_aside: str | None = None      # where open_store(force_new=True) put a bad database
    fleet = False                       # True where the fleet verbs below work (PostgreSQL)

    def close(self) -> None:
        """Release the connection. The store is unusable afterwards."""
        raise NotImplementedError

    @contextmanager
    def batch(self, durable: bool = False):
        """Group the writes inside the block into one atomic transaction; a batch inside
        another joins it. The acknowledgements (add_trigger, drop_triggers, meta_set) are
        durable when they return; inside a batch, only in one opened with durable=True,
        which is durable when the block ends (one sync for all of them: a group commit). In
        any other batch they raise ValueError, as does a durable batch inside a plain one."""
        raise NotImplementedError
        yield

    def changed(self) -> bool:
        """True if another connection committed since the previous call (cheap)."""
        raise NotImplementedError

    def wakeup_fd(self) -> int | None:
        """A descriptor that becomes readable when another connection commits a change, for
        the engine's selector; None where the store has none (SQLite: watch the file).
        It stays the same until drain_wakeups() returns WAKEUP_LOST; a lost one is
        connected again here (StoreError while the database cannot be reached)."""
        return None

    def drain_wakeups(self) -> frozenset[str]:
        """Without blocking: the tables that other connections changed since the last
        drain (or changed()), e.g. {"triggers", "commands"}. WAKEUP_LOST if the listening
        connection was lost: its descriptor is closed (unregister it), changes may have
        been missed: call wakeup_fd() (again later while it raises), then look at
        everything."""
        return frozenset()

    # ---- job specs: the validated [jobs.NAME] tables, for readers such as the CLI
    def save_specs(self, tables: dict[str, dict]) -> None:
        """Replace this device's stored job tables (name -> TOML table as plain JSON
        data): what its daemon runs, to tell a changed job at its next start."""
        raise NotImplementedError

    def load_specs(self) -> dict[str, dict]:
        raise NotImplementedError

    # ---- job state of this device
    def load_states(self) -> dict[str, JobState]:
        """Every stored JobState of this device, by job name."""
        raise NotImplementedError

    def save_state(self, state: JobState) -> None:
        """Insert or replace the state of `state.job` on this device."""
        raise NotImplementedError

    def clear_states(self) -> None:
        """Forget all job state of this device (simple_orchestrator.py --force)."""
        raise NotImplementedError

    # ---- runs
    def start_run(self, run: Run) -> Run:
        """Record a started run; returns it with its new id."""
        raise NotImplementedError

    def finish_run(self, run: Run, finish_trigger: bool = False) -> None:
        """Record ended/exit_code/signal/outcome of `run` (by id). With finish_trigger and a
        run.trigger_id, mark that trigger done with the run's outcome in the same
        transaction, only if it was not done yet: a trigger is completed exactly once."""
        raise NotImplementedError

    def set_run_pid(self, run_id: int, pid: int, pid_start: int | None) -> None:
        """Record the process of a started run (known only once it is spawned)."""
        raise NotImplementedError

    def open_runs(self) -> list[Run]:
        """Runs of this device that started and never ended (the daemon died meanwhile)."""
        raise NotImplementedError

    def recent_runs(self, job: str | None = None, limit: int = 50, since: float | None = None) -> list[Run]:
        """Newest first; optionally of one job, and only those started at or after `since`."""
        raise NotImplementedError

    def get_run(self, run_id: int) -> Run | None:
        raise NotImplementedError

    def last_runs(self) -> dict[str, Run]:
        """The most recent run of each job on this device."""
        raise NotImplementedError

    # ---- triggers: a durable FIFO queue per job
    def add_trigger(self, job: str, args: tuple | list = (), kwargs: dict | None = None,
                    now: float = 0.0, target: str | None = None) -> Trigger:
        """Enqueue a trigger; it is durable when this returns (the acknowledgement). With a
        `target` device, only that device claims it (and counts it as pending)."""
        raise NotImplementedError

    def get_trigger(self, trigger_id: int) -> Trigger | None:
        """The trigger with its state (done, outcome, run_id), or None if there is none."""
        raise NotImplementedError

    def pending_counts(self) -> dict[str, int]:
        """Unclaimed, not-done triggers per job name that this device may claim (including
        rows such as RESTART_ALL that other processes inserted; not those targeted at another
        device)."""
        raise NotImplementedError

    def claim_trigger(self, job: str, now: float) -> Trigger | None:
        """Atomically claim the oldest unclaimed trigger of `job` for this device, or None.
        A trigger is claimed by at most one caller, and one with a target only by it. Its
        kwargs is None when another program's row holds kwargs that are not a JSON object:
        the caller rejects it (finish_trigger), so that whoever waits for it hears why."""
        raise NotImplementedError

    def finish_trigger(self, trigger_id: int, outcome: str, now: float) -> bool:
        """Mark a trigger done (e.g. a RESTART_ command, or one rejected before it ran);
        False if it was already done."""
        raise NotImplementedError

    def requeue_trigger(self, trigger_id: int) -> None:
        """Return one claimed, not-done trigger to the queue (its run was cut short)."""
        raise NotImplementedError

    def release_claims(self, keep: set[int] = frozenset()) -> int:
        """Return this device's claimed, not-done triggers to the queue, except the ids in
        `keep` (whose runs were adopted). Returns how many were released."""
        raise NotImplementedError

    def clear_triggers(self) -> int:
        """Drop every trigger that is not done (simple_orchestrator.py --force)."""
        raise NotImplementedError

    def pending_triggers(self, job: str | None = None, limit: int = 100) -> list[Trigger]:
        """Unclaimed, not-done triggers, oldest first; of one job, or of every job (including
        jobs that are missing from the configuration)."""
        raise NotImplementedError

    def drop_triggers(self, job: str, trigger_id: int | None, now: float) -> int:
        """Mark the unclaimed, not-done triggers of `job` (or only the one `trigger_id` of
        it) done with outcome "dropped" at `now`; rows are kept as the audit. Returns how
        many. Durable when it returns, like add_trigger."""
        raise NotImplementedError

    # ---- events
    def add_event(self, event: Event) -> int:
        """Record an event; returns its id (ids grow with time)."""
        raise NotImplementedError

    def recent_events(self, limit: int = 100, job: str | None = None,
                      after_id: int | None = None) -> list[Event]:
        """Newest first; with after_id, only events with a larger id."""
        raise NotImplementedError

    # ---- home-wide facts
    def meta_get(self, key: str) -> str | None:
        """The value last set for `key`, or None."""
        raise NotImplementedError

    def meta_set(self, key: str, value: str) -> None:
        """Set `key` (last write wins); durable when it returns."""
        raise NotImplementedError

    # ---- housekeeping
    def prune(self, before: float, limit: int = 1000) -> int:
        """Delete at most `limit` rows of each table among the runs that ended, the triggers
        done and the events older than `before`; returns rows deleted. Each call is one short
        transaction: call again while it returns rows, to prune a large database in steps
        that never hold the write lock long."""
        raise NotImplementedError

    def check(self) -> list[str]:
        """Integrity problems of the stored data (one line each), [] when it is sound."""
        raise NotImplementedError


    # ---- fleet (PostgreSQL). Elsewhere each verb raises FleetError. "The database's
    # clock" is now() of the database server: no device clock decides who holds what.

    def heartbeat(self, device: str, tags, version: str, load: float) -> None:
        """Insert or update the row of `device` with its tags, AIOS version and load, and
        the database's now() as its last heartbeat."""
        raise FleetError(FleetError.__doc__)

    def fleet_states(self) -> dict[str, dict[str, JobState]]:
        """Every device's job states: device -> job -> JobState (`aios status --fleet`)."""
        raise FleetError(FleetError.__doc__)

    def devices(self) -> list[Device]:
        """Every device that ever heartbeat, by id, with the age of its last heartbeat on
        the database's clock, the jobs it has open runs of and the triggers it claimed."""
        raise FleetError(FleetError.__doc__)

    def reclaim_triggers(self, device: str, silent_for: float) -> int:
        """Return to the queue the triggers `device` claimed and has not finished, if its
        last heartbeat is more than `silent_for` seconds old on the database's clock (it is
        presumed dead: its claims would wait for it for ever). How many."""
        raise FleetError(FleetError.__doc__)

    def publish_jobs(self, tables: dict[str, dict], by_device: str) -> int:
        """Publish the fleet's job tables (name -> table as plain JSON data, order kept) as
        a new version and return it; versions only grow. Publishing tables equal to the
        newest version adds nothing and returns that version."""
        raise FleetError(FleetError.__doc__)

    def fleet_jobs(self) -> tuple[int, dict[str, dict]]:
        """The newest published (version, tables); (0, {}) before the first publication."""
        raise FleetError(FleetError.__doc__)

    def acquire_lease(self, job: str, device: str, ttl: float) -> Lease | None:
        """Take the lease of `job` for `device` for `ttl` seconds, only if nobody holds it
        or it has expired (database clock); None otherwise, also when `device` itself
        holds it (use renew_lease with the epoch of its run). Every successful acquire
        increments the epoch, so an epoch names one holding from acquire to expiry.
        The fencing rule: a holder must have stopped its copy by T + ttl on its own
        monotonic clock, T being when it SENT the acquire or its last successful renew,
        less the copy's stop time and a margin for clock rates (1%): the database set
        the expiry at or after T, so the copy is gone before anyone else can acquire.
        Every call returns or raises within the store's timeout, so a holder whose renew
        cannot reach the database learns it in time; renew every ttl/3 or so, and keep
        timeout + stop time well below ttl. Runs of the copy carry Run.epoch."""
        raise FleetError(FleetError.__doc__)

    def renew_lease(self, job: str, device: str, epoch: int, ttl: float) -> Lease | None:
        """Extend the lease to now() + ttl if `device` still holds it at `epoch` and it has
        not expired; the renewed Lease, or None when it is lost (stop the copy at once)."""
        raise FleetError(FleetError.__doc__)

    def release_lease(self, job: str, device: str, epoch: int) -> bool:
        """Give the lease up at once (after the copy stopped) if `device` holds it at
        `epoch`; the epoch is kept, so the next holder's is larger. False if not held."""
        raise FleetError(FleetError.__doc__)

    def leases(self) -> list[Lease]:
        """Every lease currently held (not expired), by job."""
        raise FleetError(FleetError.__doc__)

    def claim_slot(self, job: str, slot_key: str, device: str) -> bool:
        """Claim one scheduled slot of a fleet job (`slot_key`: a stable text naming it,
        e.g. repr(the slot's epoch seconds)) once fleet-wide: True for the first claimer
        and again for that same device (a restarted daemon), False for every other."""
        raise FleetError(FleetError.__doc__)

    def send_command(self, device: str, op: str, fields: dict, sender: str = "") -> int:
        """Queue an operation (start, stop, restart, trigger, ...) for the daemon of
        `device`; the database wakes it at once. Returns the command's id."""
        raise FleetError(FleetError.__doc__)

    def take_commands(self, device: str, limit: int = 100) -> list[Command]:
        """The untaken commands for `device`, oldest first, marked taken atomically: each
        is delivered once (a daemon that dies after taking one loses it)."""
        raise FleetError(FleetError.__doc__)

    def finish_command(self, command_id: int, outcome: str) -> bool:
        """Record how a taken command ended ("ok" or an error line); False if unknown or
        already finished."""
        raise FleetError(FleetError.__doc__)

    def get_command(self, command_id: int) -> Command | None:
        """The command with its state, for a sender waiting for its outcome."""
        raise FleetError(FleetError.__doc__)


def check_run_id(run: Run) -> None:
    """Refuse a run without an id (finish_run needs the Run that start_run returned)."""
    if run.id is None:
        raise ValueError(f"finish_run: the run of {run.job!r} has no id; pass the Run "
                         "that start_run returned")


def check_durable(what: str, durable: bool, batch_durable: bool) -> None:
    """Refuse an acknowledgement inside a batch that will not be durable (see Store.batch)."""
    if durable and not batch_durable:
        raise ValueError(f"{what} inside a plain batch(): an acknowledgement must be durable; "
                         "open the batch with batch(durable=True)")


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def open_store(url: str, device: str, *, force_new: bool = False, password_file: str | None = None,
               timeout: float | None = None, lease_ttl: float | None = None) -> Store:
    """Open the store at `url`: a file path or sqlite:///path, postgresql://... (the password
    from `password_file`, else AIOS_DB_PASSWORD, else libpq's own sources; every call
    returns or raises within `timeout` seconds, 5 by default, and at most a quarter of the
    fleet's `lease_ttl`, so that a lease holder whose renew hangs learns it in time), or
    memory:NAME, the in-memory database NAME of this process (memory: alone: a new one).

    A missing database file is created. An empty, damaged, non-SQLite or foreign file raises
    a BadDatabase subclass and is left untouched, unless `force_new`: then it is moved aside
    (its path is then in the store's `moved_aside`) and a new database is created. A sound
    database is opened as it is, `force_new` or not."""
    if url.startswith("memory:"):
        from .memory import MemoryDatabase, MemoryStore

        name = url.removeprefix("memory:")
        return MemoryStore(device, MemoryDatabase.named(name) if name else None)
    if is_postgres_url(url):
        from .postgres import TIMEOUT, PostgresStore

        limit = min(timeout or TIMEOUT, lease_ttl / 4 if lease_ttl else TIMEOUT)
        return PostgresStore(url, device, password_file=password_file, timeout=limit)
    from .sqlite import SqliteStore

    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return SqliteStore(path, device, force_new=force_new)
