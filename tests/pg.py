"""A PostgreSQL server for the tests, and a fresh schema on it for each store under test.

The server is $AIOS_TEST_PG_DSN when set, else one started once per test session with
`pgserver` (a PyPI package that ships the PostgreSQL binaries; as root it runs the
server as its own `pgserver` user) in a temporary folder that is deleted at exit.
Without a server the PostgreSQL tests skip, except in CI (`CI` set), where they fail.
Each store lives in a schema of its own (the URL's search_path), dropped at exit.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import tempfile
import warnings

import pytest

_server = {"dsn": None, "error": None}
_schemas: list[str] = []


def server_dsn() -> str:
    """The admin URL of the test server (starting it on first use), or skip/fail."""
    if _server["dsn"] is None and _server["error"] is None:
        try:
            _server["dsn"] = os.environ.get("AIOS_TEST_PG_DSN") or _start_pgserver()
        except Exception as exc:   # noqa: BLE001 - any reason becomes the skip/fail message
            _server["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if _server["dsn"] is None:
        message = (f"no PostgreSQL for the tests ({_server['error']}); "
                   "pip install pgserver 'psycopg[binary]', or set AIOS_TEST_PG_DSN")
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return _server["dsn"]


def need_psycopg():
    """The psycopg module: skips the calling test module without it, fails in CI."""
    try:
        import psycopg
    except ImportError:
        message = "psycopg is not installed: pip install 'psycopg[binary]'"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return psycopg


def _start_pgserver() -> str:
    import psycopg  # noqa: F401 - the store needs it too: fail here, with its name

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # platformdirs: XDG_RUNTIME_DIR is not set
        import pgserver

        folder = tempfile.mkdtemp(prefix="aios-test-pg-")
        return pgserver.get_server(folder, cleanup_mode="delete").get_uri()


def admin():
    """A new autocommit connection to the test server as its superuser."""
    import psycopg

    return psycopg.connect(server_dsn(), autocommit=True)


def schema_url(name: str) -> str:
    """A URL whose store lives in schema `name` of the test server (created if missing)."""
    from psycopg import sql

    with admin() as db:
        db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name)))
    if name not in _schemas:
        if not _schemas:
            atexit.register(_drop_schemas)
        _schemas.append(name)
    return with_search_path(server_dsn(), name)


def with_search_path(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def schema_for(folder) -> str:
    """One schema per folder, so stores opened on the same tmp_path share a database."""
    return "t_" + hashlib.sha1(str(folder).encode()).hexdigest()[:20]


def _drop_schemas() -> None:
    from psycopg import sql

    try:
        with admin() as db:
            for name in _schemas:
                db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    except Exception:   # noqa: BLE001 - the server may be gone already; nothing to keep
        pass
