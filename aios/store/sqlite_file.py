"""The SQLite state database as a file to protect: the checks before it is opened, moving
a bad one aside, online backup and restore.

`prepare(path)` is what every open goes through. A missing file is created whole (built
under another name, then linked into place: a crash never leaves an empty one). An
existing file is only read, never written, until it has passed: its 100-byte header by
hand, then a read-only connection for the schema, so that an empty file, a file that is
not SQLite, a damaged one, or another program's database raises a BadDatabase subclass
(saying what to do) and stays byte for byte as it was.

Integrity: `PRAGMA quick_check` reads the whole file, about 1.5 ms per MB here when the
file is in the page cache (7 ms for 4 MB, 60 ms for 44 MB, 0.6 s for 450 MB; much more
from a cold SD card). So the open runs it only on a file of at most CHECK_ON_OPEN_BYTES
(about 12 ms), or when the header looks wrong; a larger file is checked by `aios db
check` (or Store.check(), on a connection of its own), and its damage is found by the
first read that meets it (the store then refuses to write: see sqlite.py). Measured: a
store opens (and closes) a 0.1 MB database in 0.8 ms (0.35 ms without these checks), a
7 MB one in 7 ms. The database and its -wal, -shm and -journal files must be regular
files of the store's user that no one else may write (never links). Imports the Store
interface, the schema's tables and aios.homefs.
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from . import BadDatabase, DamagedDatabase, EmptyDatabase, ForeignDatabase, NotADatabase, StoreError
from .sqlite_schema import SCHEMA_VERSION, TABLES_OF_VERSION

__all__ = ["prepare", "check_file", "move_aside", "backup", "restore", "guard", "CHECK_ON_OPEN_BYTES"]

CHECK_ON_OPEN_BYTES = 8 << 20
BUSY_TIMEOUT_MS = 200
_MAGIC = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm", "-journal")   # what SQLite keeps beside a database file
_CORRUPT, _NOTADB = 11, 26                   # SQLite's primary result codes


def prepare(path: str) -> None:
    """Make `path` ready to open: create it when missing, else check it without writing.
    Raises a BadDatabase subclass for a file that must not be used as it is."""
    if path == ":memory:" or path.startswith("file:"):
        return
    _check_own(path)
    if not os.path.lexists(path):
        _refuse_orphan_journal(path)
        _create(path)
        return
    with guard(f"opening state database {path}", path):
        looks_wrong = _check_header(path)
    with _read_only(path) as db:
        version, tables, columns = _schema(db, path)
        _check_tables(path, version, tables, columns)
        if looks_wrong or _size(path) <= CHECK_ON_OPEN_BYTES:
            problems = quick_check(db)
            if problems:
                raise DamagedDatabase.at(path, f"is damaged: {_summary(problems)}")


def check_file(path: str, restorable: bool = False) -> list[str]:
    """Every problem of the database at `path`, one line each ([] when it is sound), read
    without writing. With `restorable`, also what makes it unfit to restore from."""
    if not os.path.lexists(path):
        return [f"{path} does not exist"]
    try:
        _check_own(path)
        with guard(f"reading {path}", path):
            _check_header(path)
        with _read_only(path) as db:
            version, tables, columns = _schema(db, path)
            _check_tables(path, version, tables, columns)
            problems = quick_check(db)
    except BadDatabase as exc:
        return [exc.reason]
    except StoreError as exc:
        return [str(exc)]
    if version > SCHEMA_VERSION:
        problems.append(f"its schema version {version} is newer than this AIOS knows "
                        f"({SCHEMA_VERSION}): upgrade AIOS")
    if restorable and version == 0 and "triggers" not in tables:
        problems.append("it holds no AIOS tables: nothing to restore")
    return problems


def quick_check(db: sqlite3.Connection) -> list[str]:
    """SQLite's quick_check: [] when sound, else its findings."""
    try:
        return [line for (line,) in db.execute("PRAGMA quick_check") if line != "ok"]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


# ---------------------------------------------------------------- checks before opening

def _check_own(path: str) -> None:
    """The database and the files SQLite keeps beside it: regular files of this user
    that no one else may write (SQLite would follow a link planted at any of them)."""
    from ..homefs import UnsafePath, check_own_file

    for suffix in ("",) + _SIDE_FILES:
        try:
            check_own_file(path + suffix, "state database" if not suffix else "state database file")
        except UnsafePath as exc:
            raise StoreError(str(exc)) from None


def _check_header(path: str) -> bool:
    """Raise for a file that cannot be an SQLite database; True if it looks truncated."""
    with open(path, "rb") as file:
        head, size = file.read(100), os.fstat(file.fileno()).st_size
    if size == 0:
        raise EmptyDatabase.at(path, "is empty (0 bytes)")
    if not head.startswith(_MAGIC) and not (len(head) < len(_MAGIC) and _MAGIC.startswith(head)):
        raise NotADatabase.at(path, f"is not an SQLite database (it starts with {head[:16]!r})")
    if len(head) < 100:
        raise NotADatabase.at(path, f"is truncated ({size} bytes, less than an SQLite header)")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise NotADatabase.at(path, f"has a broken SQLite header (page size {page_size})")
    pages = int.from_bytes(head[28:32], "big") if head[24:28] == head[92:96] else 0
    return size < page_size or size < pages * page_size


def _schema(db: sqlite3.Connection, path: str) -> tuple[int, set[str], set[str]]:
    """The schema version, the tables (SQLite's own left out) and the columns of `triggers`."""
    with guard(f"reading the schema of {path}", path):
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite~_%' ESCAPE '~'")}
        columns = {c for (c,) in db.execute("SELECT name FROM pragma_table_info('triggers')")}
        return version, tables, columns


def _check_tables(path: str, version: int, tables: set[str], trigger_columns: set[str]) -> None:
    """AIOS's tables of `version`; or, at version 0, nothing yet or an original `triggers`."""
    if version == 0:
        if tables and not {"id", "job"} <= trigger_columns:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise ForeignDatabase.at(path, f"holds another program's tables ({shown}), not AIOS's")
        return
    expected = TABLES_OF_VERSION.get(version, ())
    missing = [name for name in expected if name not in tables]
    if expected and len(missing) == len(expected):
        raise ForeignDatabase.at(path, f"has schema version {version} but none of AIOS's tables")
    if missing:
        raise DamagedDatabase.at(path, f"lacks the table(s) {', '.join(missing)}")


def _refuse_orphan_journal(path: str) -> None:
    """A write-ahead log whose database is gone holds committed data: SQLite would replay
    it into a new database at that path. Never start over on top of it."""
    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        raise DamagedDatabase.at(path, f"is missing but its write-ahead log {wal} is there "
                                       f"({os.path.getsize(wal)} bytes)")


def _create(path: str) -> None:
    """A new, empty WAL-mode database only its owner can read, built aside and linked in."""
    partial = f"{path}.new-{os.getpid()}"
    with guard(f"creating state database {path}", path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        _unlink(partial)
        _create_private(partial)
        try:
            db = sqlite3.connect(partial, isolation_level=None)
            db.execute("PRAGMA journal_mode = WAL")   # writes the header: a valid database
            db.close()
            _fsync(partial)
            os.link(partial, path)                    # never replaces one made meanwhile
            _fsync(os.path.dirname(os.path.abspath(path)))
        except FileExistsError:
            pass
        finally:
            _unlink(partial)


# ---------------------------------------------------------------- moving, backup, restore

def move_aside(path: str, tag: str) -> str:
    """Rename the database and its -wal, -shm and -journal files to PATH.TAG-YYYYmmddTHHMMSS
    (the database first: a crash in between leaves a log without its database, which
    prepare() refuses, never a database without its log). Returns the new path."""
    base = aside = f"{path}.{tag}-{time.strftime('%Y%m%dT%H%M%S')}"
    count = 0
    while any(os.path.lexists(aside + s) for s in ("",) + _SIDE_FILES):
        count += 1
        aside = f"{base}-{count}"
    for suffix in ("",) + _SIDE_FILES:
        if os.path.lexists(path + suffix):
            os.rename(path + suffix, aside + suffix)
    _fsync(os.path.dirname(os.path.abspath(path)))
    return aside


def backup(source: str, dest: str) -> None:
    """Copy the database `source` into the new file `dest` with SQLite's online backup (a
    consistent copy while a daemon writes), checked before it appears under its name."""
    with guard(f"backing up {source} to {dest}", source), _copied(source, f"{dest}.partial") as partial:
        problems = check_file(partial)
        if problems:
            raise DamagedDatabase.at(source, f"gave a damaged copy: {_summary(problems)}")
        os.link(partial, dest)   # fails if dest exists: a backup never replaces a file
        _fsync(os.path.dirname(os.path.abspath(dest)))


def restore(source: str, path: str) -> str | None:
    """Replace the database at `path` by a copy of the sound AIOS database `source`; the
    current files are moved aside first. Returns where they went (None if there were none).
    The caller makes sure no daemon has the database open."""
    problems = check_file(source, restorable=True)
    if problems:
        raise StoreError(f"{source} cannot be restored: {_summary(problems)}")
    with guard(f"restoring {path} from {source}", source), _copied(source, f"{path}.restore") as partial:
        had = any(os.path.lexists(path + s) for s in ("",) + _SIDE_FILES)
        aside = move_aside(path, "replaced") if had else None
        os.rename(partial, path)
        _fsync(os.path.dirname(os.path.abspath(path)))
    return aside


@contextmanager
def _copied(source: str, name: str):
    """A private copy of `source` at NAME-PID in one self-contained file (rollback journal:
    no -wal or -shm beside it), synced; removed on the way out unless renamed meanwhile."""
    partial = f"{name}-{os.getpid()}"
    _unlink(partial)
    _create_private(partial)
    try:
        with _read_only(source) as src:
            dst = sqlite3.connect(partial, isolation_level=None)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        _fsync(partial)
        yield partial
    finally:
        _unlink(partial)


# ---------------------------------------------------------------- errors and files

@contextmanager
def guard(what: str, path: str):
    """Re-raise a sqlite3.Error, OSError or text SQLite cannot store (a lone surrogate) as
    one line naming `what`: a DamagedDatabase or NotADatabase when SQLite says so, else a
    StoreError."""
    try:
        yield
    except (sqlite3.Error, OSError, UnicodeEncodeError) as exc:
        kind = _bad_kind(exc)
        if kind is None:
            raise StoreError(f"{what} failed: {exc}") from exc
        raise kind.at(path, f"is damaged: {what} failed: {exc}" if kind is DamagedDatabase
                      else f"is not an SQLite database: {what} failed: {exc}") from exc


def _bad_kind(exc: Exception) -> type[BadDatabase] | None:
    code = getattr(exc, "sqlite_errorcode", None)   # Python 3.11+; the text before that
    text = str(exc)
    if code is not None and code & 0xFF == _CORRUPT or code is None and "malformed" in text:
        return DamagedDatabase
    if code == _NOTADB or code is None and "not a database" in text:
        return NotADatabase
    return None


@contextmanager
def _read_only(path: str):
    """A connection that cannot write: its close never checkpoints into the file."""
    db = None
    with guard(f"opening state database {path}", path):
        db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        yield db
    finally:
        db.close()


def _create_private(path: str) -> None:
    """A new empty file only its owner can read and write, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)   # SQLite gives the -wal and -shm files the same mode
    finally:
        os.close(fd)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _size(path: str) -> int:
    wal = path + "-wal"
    return os.path.getsize(path) + (os.path.getsize(wal) if os.path.exists(wal) else 0)


def _summary(problems: list[str]) -> str:
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
