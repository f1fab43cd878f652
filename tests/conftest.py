"""Fixtures shared by every test folder: the PostgreSQL server (see tests/pg.py)."""
from __future__ import annotations

import pytest

from tests import pg


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The admin URL of the test PostgreSQL, started once per session (skips without one,
    fails in CI)."""
    return pg.server_dsn()


@pytest.fixture
def pg_url(pg_dsn, tmp_path) -> str:
    """A URL whose store lives in an empty schema of its own."""
    return pg.schema_url(pg.schema_for(tmp_path))
