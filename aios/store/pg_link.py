"""Connections to a fleet's PostgreSQL, for the PostgreSQL store only.

Owns: the URL as shown anywhere (`redact`: never the password), where the password comes
from (the URL given in AIOS_DB, a password file only its owner can read, AIOS_DB_PASSWORD,
else libpq's own PGPASSWORD and ~/.pgpass), opening a connection with session limits and
a deadline on every call, removing the password from any message (`scrub`), and the
LISTEN connection whose descriptor the engine waits on (`Listener`). Imports psycopg
(the caller has checked it is installed) and, from aios, only the store package.
"""
from __future__ import annotations

import inspect
import math
import os
import stat
from contextlib import suppress
from urllib.parse import quote, unquote

import psycopg
from psycopg import pq

from . import WAKEUP_LOST, StoreError

__all__ = ["redact", "split_password", "read_password", "scrub", "connect", "Listener"]

PASSWORD_ENV = "AIOS_DB_PASSWORD"
_BUSY = (pq.TransactionStatus.ACTIVE, pq.TransactionStatus.UNKNOWN)


def _split(url: str) -> tuple[str, str | None]:
    """(the URL without its password, the password or None): from user:password@ or from
    a password=... parameter. The rest of the URL is kept as written."""
    scheme, sep, rest = url.partition("://")
    hier, _, query = rest.partition("?")
    authority, slash, path = hier.partition("/")
    userinfo, _, hosts = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    password = unquote(password) if colon else None
    kept = []
    for piece in query.split("&") if query else ():
        if unquote(piece.partition("=")[0]) == "password":
            password = unquote(piece.partition("=")[2])
        else:
            kept.append(piece)
    clean = f"{scheme}{sep}{user + '@' if user else ''}{hosts}{slash}{path}"
    return clean + ("?" + "&".join(kept) if kept else ""), password or None


def redact(url: str) -> str:
    """The URL without its password: what messages, logs and repr() may show."""
    return _split(url)[0]


def split_password(url: str) -> tuple[str, str | None]:
    """(the URL without its password, that password or None)."""
    return _split(url)


def read_password(path: str | None) -> str | None:
    """The password in `path` (first line), or from AIOS_DB_PASSWORD; None leaves it to
    libpq. A file other users can read is refused."""
    if path is None:
        return os.environ.get(PASSWORD_ENV) or None
    path = os.path.expanduser(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open(fd, encoding="utf-8") as file:
            if stat.S_IMODE(os.fstat(file.fileno()).st_mode) & 0o077:
                raise StoreError(f"password file {path} can be read by other users; "
                                 f"chmod 600 {path}")
            password = file.read(4096).split("\n", 1)[0].rstrip("\r")
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"password file {path} cannot be read: {exc.strerror or exc}") from None
    if not password or "\0" in password:
        raise StoreError(f"password file {path} holds no password on its first line")
    return password


def scrub(text: str, password: str | None) -> str:
    """`text` on one line, with every form of the password replaced by ***."""
    text = " ".join(str(text).split())
    if password:
        for form in {password, quote(password, safe=""), quote(password)}:
            text = text.replace(form, "***")
    return text


# ---------------------------------------------------------------- connections

# Connection.wait takes a timeout in recent psycopg (3.3.9 does, 3.3.5 did not).
DEADLINES = "timeout" in inspect.signature(psycopg.Connection.wait).parameters


class _Connection(psycopg.Connection):
    """A connection whose every wait on the server ends after `deadline` seconds (where
    psycopg supports it: DEADLINES): a paused server or network cannot hold a daemon in
    a store call longer than that."""

    deadline: float | None = None

    if DEADLINES:
        def wait(self, gen, interval=0.1, timeout=None):
            return super().wait(gen, interval, self.deadline if timeout is None else timeout)


def connect(url: str, password: str | None, name: str, timeout: float) -> _Connection:
    """An autocommit connection named `name` in pg_stat_activity, whose statements, lock
    waits and idle transactions the server ends after about `timeout` seconds."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    params.setdefault("connect_timeout", max(2, math.ceil(timeout)))
    params.setdefault("application_name", name[:63])
    for key, value in (("keepalives", 1), ("keepalives_idle", 5), ("keepalives_interval", 2),
                       ("keepalives_count", 3), ("tcp_user_timeout", int(timeout * 1000))):
        params.setdefault(key, value)
    if password is not None:
        params["password"] = password
    db = _Connection.connect(psycopg.conninfo.make_conninfo(**params), autocommit=True)
    ms = int(timeout * 1000)
    db.execute(f"SET statement_timeout = {ms}; SET lock_timeout = {ms}; "
               f"SET idle_in_transaction_session_timeout = {2 * ms}")
    db.deadline = timeout
    return db


def usable(db) -> bool:
    """False for a connection that is closed, broken, or left mid-statement by a deadline."""
    return not (db.closed or db.broken or db.pgconn.transaction_status in _BUSY)


class Listener:
    """The LISTEN connection of one store: its descriptor, and the tables that other
    connections changed (notifications from the store's own connection are ignored)."""

    def __init__(self, open_connection, channel: str, own_pid):
        self._open, self._channel, self._own_pid = open_connection, channel, own_pid
        self._db, self._listened, self._ended = None, False, False
        self._heard: set[str] = set()

    def fd(self) -> int:
        if self._db is None:
            db = self._open()
            db.add_notify_handler(self._on_notify)
            db.add_notice_handler(self._on_notice)
            db.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(self._channel)))
            self._db, self._listened = db, True
        return self._db.fileno()

    def drain(self, sync: bool = False) -> frozenset[str]:
        """Read what arrived without blocking (after a round trip with `sync`: then every
        commit finished before the call has been heard)."""
        if self._db is None:   # changes made while nobody listened are unknown
            missed = self._listened
            self.fd()
            return WAKEUP_LOST if missed else frozenset()
        try:
            if sync:
                self._db.execute("SELECT 1")
            self._consume(self._db.pgconn)
            if self._ended or not usable(self._db):
                raise psycopg.OperationalError("the listening connection was lost")
        except psycopg.Error:
            self.close()
            if sync:   # changed(): listen again at once, so one True covers the outage
                with suppress(psycopg.Error):
                    self.fd()
            return WAKEUP_LOST
        heard, self._heard = frozenset(self._heard), set()
        return heard

    @staticmethod
    def _consume(pgconn) -> None:
        pgconn.consume_input()
        while (note := pgconn.notifies()) is not None:
            pgconn.notify_handler(note)

    def close(self) -> None:
        db, self._db, self._ended = self._db, None, False
        if db is not None:
            db.close()

    def _on_notice(self, diagnostic) -> None:
        """A server ending the session says so (FATAL) before it closes the socket."""
        if diagnostic.severity_nonlocalized in ("FATAL", "PANIC"):
            self._ended = True

    def _on_notify(self, note) -> None:
        if note.pid != self._own_pid():
            self._heard.add(note.payload)
