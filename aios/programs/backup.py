"""backup: an online backup of the AIOS state database.

Copies $AIOS_HOME/orchestrator.db with SQLite's online backup API (consistent even while
the daemon writes to it) into $AIOS_HOME/backups/orchestrator-YYYYmmdd-HHMMSS.db (the
folder 0700, the copies 0600: they hold what the database holds), then
deletes all but the newest `keep` backups. Prints what it did. On SIGTERM it removes the
unfinished copy and exits with 143, as a shell reports SIGTERM. Standard library only.
"""
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path


def copy_db(source, target):
    """Back up `source` into `target` atomically (a partial copy never has the final name),
    only its owner may read it (it holds everything the database holds), and never
    through a link planted at the partial copy's name."""
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    src = sqlite3.connect(f"{source.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
        finally:
            dst.close()
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        src.close()


def prune(folder, keep):
    """Delete all but the newest `keep` backups; return the deleted paths."""
    backups = sorted(folder.glob("orchestrator-*.db"))
    old = backups[:-keep]
    for path in old:
        path.unlink()
    return old


def main(keep=5):
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise SystemExit(f"backup: keep = {keep!r} must be a whole number of at least 1")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    home = Path(os.environ.get("AIOS_HOME", "."))
    source = home / "orchestrator.db"
    if not source.exists():
        print(f"backup: {source} does not exist yet; nothing to back up")
        return
    folder = home / "backups"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.is_symlink() or not folder.is_dir():
        raise SystemExit(f"backup: {folder} is a link or not a folder; remove it and a folder is made")
    target = folder / f"orchestrator-{time.strftime('%Y%m%d-%H%M%S')}.db"
    copy_db(source, target)
    print(f"backup: {source} -> {target} ({target.stat().st_size} bytes)")
    for path in prune(folder, keep):
        print(f"backup: removed old backup {path.name}")
