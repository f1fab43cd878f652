"""`aios db check`, `aios db backup [FILE]`, `aios db restore FILE`: the state database
(orchestrator.db) as a file to look after. check and backup only read it, also while a
daemon runs; restore replaces it, only while no daemon runs for the home, and keeps the
replaced file aside. Imports control and (lazily) the store's file functions.
"""
from __future__ import annotations

import os
import sys
import time

from .. import control
from . import EXIT_OK, command, fail, out

DB_NAME = "orchestrator.db"
BACKUPS = "backups"
_ADVICE = ("restore a backup with `aios db restore BACKUP`, or start with --force-new-db "
           "to move it aside and begin a new one")


def _db_arguments(cmd) -> None:
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("check", help="check the database's integrity (SQLite quick_check) and schema")
    backup = actions.add_parser("backup", help="copy the database while it is in use (SQLite's online backup)")
    backup.add_argument("file", nargs="?", help=f"where to write it (default: {BACKUPS}/orchestrator-TIME.db "
                        "in the home); an existing folder gets the default name inside it")
    restore = actions.add_parser("restore", help="replace the database by a backup (no daemon may run)")
    restore.add_argument("file", help="the backup to restore; it is checked first")


@command("db", setup=_db_arguments)
def cmd_db(args, home: str) -> int:
    """Check, back up or restore the state database (orchestrator.db)."""
    return {"check": _check, "backup": _backup, "restore": _restore}[args.action](args, home)


def _check(args, home: str) -> int:
    from ..store.sqlite_file import check_file

    path = os.path.join(home, DB_NAME)
    began = time.perf_counter()
    problems = check_file(path)
    took = (time.perf_counter() - began) * 1000
    if problems:
        for problem in problems:
            sys.stderr.write(f"aios: {path}: {problem}\n")
        return fail(f"{path} has {len(problems)} problem(s): {_ADVICE}")
    out(f"aios: {path} is sound ({_size(path)}, checked in {took:.0f} ms)")
    return EXIT_OK


def _backup(args, home: str) -> int:
    from ..store.sqlite_file import backup

    path = os.path.join(home, DB_NAME)
    if not os.path.exists(path):
        return fail(f"nothing to back up: {path} does not exist")
    name = f"orchestrator-{time.strftime('%Y%m%dT%H%M%S')}.db"
    dest = os.path.abspath(args.file or os.path.join(home, BACKUPS, name))
    if os.path.isdir(dest):
        dest = os.path.join(dest, name)
    if os.path.lexists(dest):
        return fail(f"{dest} exists already; name a new file")
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    began = time.perf_counter()
    backup(path, dest)
    out(f"aios: backed up {path} to {dest} ({_size(dest)}) in {(time.perf_counter() - began) * 1000:.0f} ms")
    return EXIT_OK


def _restore(args, home: str) -> int:
    from ..store.sqlite_file import restore

    source, path = os.path.abspath(args.file), os.path.join(home, DB_NAME)
    try:
        pid = control.call(home, "ping")["pid"]
    except control.DaemonNotRunning:
        pass
    else:
        return fail(f"a daemon (pid {pid}) is running for {home}: stop it with `aios down`, then restore")
    lock = _lock_home(home)
    if lock is None:
        return fail(f"a daemon holds the lock of {home}: stop it with `aios down`, then restore")
    try:
        aside = restore(source, path)
    finally:
        os.close(lock)
    kept = f"; the replaced database is kept as {aside}" if aside else ""
    out(f"aios: restored {path} from {source}{kept}")
    return EXIT_OK


def _lock_home(home: str) -> int | None:
    """The daemon's lock (an flock on the home folder itself), held while the database is
    replaced so that no daemon starts meanwhile; None if a daemon holds it."""
    import fcntl

    os.makedirs(home, mode=0o750, exist_ok=True)
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _size(path: str) -> str:
    size = os.path.getsize(path)
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size} bytes"
