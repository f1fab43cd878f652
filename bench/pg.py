"""The PostgreSQL server of the benchmarks: an admin URL given (--pg, else
$AIOS_BENCH_PG_DSN), else a server started with pgserver in a temporary folder (a Unix
socket, fsync on, as installed; deleted at exit) on first use. Each store under test
lives in a fresh schema of its own (the URL's search_path), dropped by `drop()`.
Standard library and psycopg (pgserver only to start a server).
"""
from __future__ import annotations

import os
import tempfile
import warnings

from . import measure


class Postgres:
    def __init__(self, admin: str | None = None):
        self._admin = admin or os.environ.get("AIOS_BENCH_PG_DSN")
        self.server = None                 # the pgserver server, when this bench started it
        self.restarted = False             # ... and restarted it (pgserver then cannot stop it)
        self.error: str | None = None
        self.schemas: list[str] = []

    @property
    def admin(self) -> str:
        """The admin URL, starting a server on first use (MeasureError if none can be had)."""
        if self._admin is None and self.error is None:
            try:
                self._admin = self._start()
            except Exception as exc:   # noqa: BLE001 - any reason is the row's failure
                self.error = f"no PostgreSQL: {type(exc).__name__}: {exc}".splitlines()[0] + \
                    " (pip install pgserver 'psycopg[binary]', or pass --pg URL)"
        if self._admin is None:
            raise measure.MeasureError(self.error)
        return self._admin

    def unavailable(self) -> str | None:
        try:
            self.admin
        except measure.MeasureError as exc:
            return str(exc)
        return None

    def _start(self) -> str:
        import psycopg  # noqa: F401 - the store needs it too: fail here, with its name

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # platformdirs: XDG_RUNTIME_DIR is not set
            import pgserver

            self.server = pgserver.get_server(tempfile.mkdtemp(prefix="aios-bench-pg-"), cleanup_mode="delete")
        return self.server.get_uri()

    def connect(self):
        import psycopg

        return psycopg.connect(self.admin, autocommit=True)

    def fresh(self) -> str:
        """The URL of a new, empty schema."""
        name = f"bench_{os.getpid()}_{len(self.schemas)}"
        with self.connect() as db:
            db.execute(f'CREATE SCHEMA "{name}"')
        self.schemas.append(name)
        return f"{self.admin}{'&' if '?' in self.admin else '?'}options=-csearch_path%3D{name}"

    def drop(self) -> None:
        if not self.schemas:
            return
        with self.connect() as db:
            for name in self.schemas:
                db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        self.schemas.clear()

    def close(self) -> None:
        """Drop the schemas; stop a server of our own (pgserver's cleanup looks for the
        postmaster it started, which a restart replaced: that one is stopped here)."""
        if self._admin is None:
            return
        self.drop()
        if self.server is not None:
            import pgserver

            if self.restarted:
                pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)
            self.server.cleanup()
            self.server = None

    def allow_connections(self, needed: int) -> None:
        """At least `needed` connections: a server of our own is restarted with more; a
        given one that has too few fails the row with what to change."""
        with self.connect() as db:
            have = int(db.execute("SHOW max_connections").fetchone()[0])
            if have >= needed:
                return
            if self.server is None:
                raise measure.MeasureError(f"the PostgreSQL server allows {have} connections; this row needs "
                                           f"{needed}: raise max_connections")
            db.execute(f"ALTER SYSTEM SET max_connections = {int(needed)}")
        import pgserver

        pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self.server.pgdata, user=self.server.system_user)
        self.restarted = True

    def server_pids(self) -> list[int]:
        """The server's processes on this machine (the postmaster and its children), or []
        when it runs elsewhere."""
        with self.connect() as db:
            backend = db.execute("SELECT pg_backend_pid()").fetchone()[0]
            st = measure.stat(backend)
            if st is None:
                return []
            postmaster = st.ppid
        return [postmaster] + measure.Children().of(postmaster)

    def connections(self, application_prefix: str) -> int:
        """Connections whose application_name starts with the prefix (AIOS names its own
        `aios DEVICE`)."""
        with self.connect() as db:
            return db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                              (application_prefix.replace("%", r"\%") + "%",)).fetchone()[0]
