"""idle_task: housekeeping while the machine is otherwise idle.

Deletes from $AIOS_HOME/orchestrator.db the ended runs, done triggers and events older
than `days`, and the rotated logs ($AIOS_HOME/logs/*.log.N) not modified for `days`.
Prints the counts. The daemon writes the same database, so it waits up to 3 s for a
lock. On SIGTERM (AIOS stops idle jobs when other work starts) the open transaction is
rolled back and it exits with 143, as a shell reports SIGTERM. Standard library only.
"""
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

DELETES = (
    ("runs", "DELETE FROM runs WHERE ended IS NOT NULL AND ended < ?"),
    ("triggers", "DELETE FROM triggers WHERE done = 1 AND finished < ?"),
    ("events", "DELETE FROM events WHERE ts < ?"),
)


def prune_db(db, cutoff):
    """{table: rows deleted}, in one transaction; a missing table counts as 0."""
    counts = {}
    conn = sqlite3.connect(db, timeout=3)
    try:
        conn.execute("PRAGMA busy_timeout = 3000")
        with conn:
            for table, sql in DELETES:
                try:
                    counts[table] = conn.execute(sql, (cutoff,)).rowcount
                except sqlite3.OperationalError as exc:  # no such table/column
                    print(f"idle_task: skipping {table}: {exc}", flush=True)
                    counts[table] = 0
    finally:
        conn.close()
    return counts


def prune_logs(folder, cutoff):
    removed = 0
    for path in folder.glob("*.log.*"):
        if path.suffix[1:].isdigit() and path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink()
            removed += 1
    return removed


def main(days=30):
    if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
        raise SystemExit(f"idle_task: days = {days!r} must be a number of days, 0 or more")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    home = Path(os.environ.get("AIOS_HOME", "."))
    cutoff = time.time() - days * 86400
    print(f"idle_task: pruning what ended before {time.strftime('%Y-%m-%d %H:%M', time.localtime(cutoff))}",
          flush=True)
    db = home / "orchestrator.db"
    counts = prune_db(db, cutoff) if db.exists() else {}
    logs = prune_logs(home / "logs", cutoff)
    done = ", ".join(f"{n} {table}" for table, n in counts.items()) or "no database yet"
    print(f"idle_task: removed {done}; {logs} rotated log files older than {days:g} days")
