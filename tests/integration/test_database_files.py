"""The state database as a user meets it: a daemon started on a bad orchestrator.db exits
with one line and leaves the file as it was; --force-new-db sets it aside; `aios db check`,
`backup` and `restore` with their exit codes and messages. Real daemons, real files."""
from __future__ import annotations

import fcntl
import os
import sqlite3

import pytest

from tests.test_store_files import BAD_FILES, sound_database

from .conftest import LIVENESS, DaemonProcess, write_home
from .test_cli import READY, aios, daemon, ok  # noqa: F401 - daemon is a fixture

TOML = """
[jobs.sleeper]
type = "always"
command = ["sleep", "100000"]
"""
ADVICE = "--force-new-db to move it aside and begin a new one"


@pytest.fixture(params=list(BAD_FILES))
def bad_home(request, home):
    """A home whose orchestrator.db is one of the bad files, and the reason it is refused."""
    make, _, reason = BAD_FILES[request.param]
    write_home(home, TOML)
    make(home / "orchestrator.db")
    for side in ("-wal", "-shm"):
        (home / f"orchestrator.db{side}").unlink(missing_ok=True)
    return home, reason


def test_a_daemon_on_a_bad_database_exits_with_one_line_and_touches_nothing(bad_home):
    home, reason = bad_home
    before = (home / "orchestrator.db").read_bytes()
    daemon = DaemonProcess(home)
    assert daemon.proc.wait(LIVENESS) == 1
    lines = daemon.output().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"aios: state database {home / 'orchestrator.db'} {reason}")
    assert lines[0].endswith(ADVICE) and "aios db restore BACKUP" in lines[0]
    assert (home / "orchestrator.db").read_bytes() == before


def test_force_new_db_starts_on_a_new_database_and_keeps_the_bad_one(bad_home, daemon):
    home, _ = bad_home
    before = (home / "orchestrator.db").read_bytes()
    daemon.pids.append(int(READY.fullmatch(ok(aios(home, "up", "-d", "--force-new-db")).rstrip("\n"))[1]))
    kept = [p for p in home.iterdir() if p.name.startswith("orchestrator.db.broken-")
            and not p.name.endswith(("-wal", "-shm"))]
    assert len(kept) == 1 and kept[0].read_bytes() == before
    assert ok(aios(home, "db", "check")).startswith(f"aios: {home / 'orchestrator.db'} is sound")
    daemon.down()


def test_db_check_exit_codes_and_messages(home):
    write_home(home, TOML)
    assert aios(home, "db").returncode == 2 and aios(home, "db", "restore").returncode == 2
    missing = aios(home, "db", "check")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    sound_database(home / "orchestrator.db")
    assert ok(aios(home, "db", "check")).startswith(f"aios: {home / 'orchestrator.db'} is sound (")
    (home / "orchestrator.db").write_bytes(b"\0" * 4096)
    bad = aios(home, "db", "check")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        f"aios: {home / 'orchestrator.db'}: is not an SQLite database (it starts with {bytes(16)!r})",
        f"aios: {home / 'orchestrator.db'} has 1 problem(s): restore a backup with `aios db restore BACKUP`, "
        f"or start with {ADVICE}"]


def test_backup_while_the_daemon_runs_then_restore_once_it_is_down(home, daemon):
    write_home(home, TOML)
    pid = daemon.up()
    out = ok(aios(home, "db", "backup"))
    backups = list((home / "backups").iterdir())
    assert len(backups) == 1 and out.startswith(f"aios: backed up {home / 'orchestrator.db'} to {backups[0]} (")
    named = aios(home, "db", "backup", str(backups[0]))
    assert named.returncode == 1 and named.stderr == f"aios: {backups[0]} exists already; name a new file\n"
    refused = aios(home, "db", "restore", str(backups[0]))
    assert refused.returncode == 1
    assert refused.stderr == (f"aios: a daemon (pid {pid}) is running for {home}: "
                              "stop it with `aios down`, then restore\n")
    daemon.down()
    restored = ok(aios(home, "db", "restore", str(backups[0])))
    kept = [p for p in home.iterdir() if p.name.startswith("orchestrator.db.replaced-")]
    assert len(kept) == 1
    assert restored == (f"aios: restored {home / 'orchestrator.db'} from {backups[0]}; "
                        f"the replaced database is kept as {kept[0]}\n")
    with sqlite3.connect(home / "orchestrator.db") as db:
        assert db.execute("SELECT COUNT(*) FROM events WHERE name = 'daemon_started'").fetchone() == (1,)


def test_restore_refuses_while_the_lock_is_held_and_a_bad_backup(home):
    write_home(home, TOML)
    copy = sound_database(home / "copy.db")
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)   # the daemon's lock, as a daemon between taking it and answering holds it
    try:
        held = aios(home, "db", "restore", str(copy))
    finally:
        os.close(fd)
    assert held.returncode == 1 and "holds the lock of" in held.stderr
    garbage = home / "garbage.db"
    garbage.write_bytes(b"x" * 5000)
    bad = aios(home, "db", "restore", str(garbage))
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"aios: {garbage} cannot be restored: is not an SQLite database")
    assert not (home / "orchestrator.db").exists()
    ok(aios(home, "db", "restore", str(copy)))
    assert ok(aios(home, "db", "check")).startswith(f"aios: {home / 'orchestrator.db'} is sound")
