"""The SQLite store's schema: its versions and the migrations between them.

`PRAGMA user_version` is the schema version; MIGRATIONS[n] takes a database from version
n to n + 1 inside one write transaction, in place. A migration, once released, is never
changed: a database written by that release must keep migrating the same way (the v1
statements below are what release 1 created). Only modules under aios/store/ import this;
it imports nothing from aios but the StoreError it raises.
"""
from __future__ import annotations

import sqlite3

from . import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "TABLES_OF_VERSION"]

TABLES_OF_VERSION = {1: ("jobs", "job_state", "runs", "triggers", "events"),
                     2: ("jobs", "job_state", "runs", "triggers", "events", "meta"),
                     3: ("jobs", "job_state", "runs", "triggers", "events", "meta")}

# ---------------------------------------------------------------- version 1

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

# ---------------------------------------------------------------- version 2

_SCHEMA_V2 = (
    "ALTER TABLE job_state ADD COLUMN slot_boot REAL",
    "ALTER TABLE job_state ADD COLUMN boot_id TEXT",
    "ALTER TABLE events ADD COLUMN data TEXT",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # what prune() walks: the oldest rows first, LIMIT rows at a time
    "CREATE INDEX runs_ended ON runs (ended) WHERE ended IS NOT NULL",
    "CREATE INDEX triggers_finished ON triggers (finished) WHERE done <> 0",
)


def _migrate_to_v2(db: sqlite3.Connection) -> None:
    """Boot-clock slots, event data, the meta table, and indexes for pruning in steps."""
    for sql in _SCHEMA_V2:
        db.execute(sql)


# ---------------------------------------------------------------- version 3


def _migrate_to_v3(db: sqlite3.Connection) -> None:
    """A trigger may name the one device that may run it (aios trigger JOB --device ID)."""
    db.execute("ALTER TABLE triggers ADD COLUMN target TEXT")


MIGRATIONS = (_migrate_to_v1, _migrate_to_v2, _migrate_to_v3)   # MIGRATIONS[n] takes user_version n to n + 1
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = TABLES_OF_VERSION[SCHEMA_VERSION]
