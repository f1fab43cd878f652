"""The SQLite database as a file to protect (aios/store/sqlite_file.py): what opening does
with empty, truncated, garbage, foreign and damaged files, --force-new-db, damage met at
run time, backup and restore. Real files in tmp_path; bad files are made by writing
bytes into real databases."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from aios.spec import Event, JobState, Run, replace
from aios.store import (BadDatabase, DamagedDatabase, EmptyDatabase, ForeignDatabase,
                        NotADatabase, StoreError, open_store)
from aios.store import sqlite_file
from aios.store.sqlite import SqliteStore
from aios.store.sqlite_file import backup, check_file, restore

T0 = 1_700_000_000.0
ADVICE = ("see `aios db check`, restore a backup with `aios db restore BACKUP`, or start with "
          "--force-new-db to move it aside and begin a new one")


def sound_database(path: Path, rows: int = 300) -> Path:
    """A real AIOS database with some of everything, closed (its WAL folded in)."""
    store = SqliteStore(str(path), "dev1")
    with store.batch(durable=True):
        store.save_state(JobState(job="web", pid=42))
        for i in range(rows):
            run = store.start_run(Run(job="web", started=T0 + i))
            store.finish_run(replace(run, ended=T0 + i + 1, exit_code=0))
            store.add_trigger("llm", [f"argument {i}"], now=T0 + i)
            store.add_event(Event(ts=T0 + i, name="job_exited", job="web", message="m" * 200))
    store.close()
    assert not os.path.exists(f"{path}-wal")
    return path


def damage_middle_page(path: Path) -> int:
    """Overwrite the page in the middle of the file with bytes no page can start with."""
    page_size = int.from_bytes(path.read_bytes()[16:18], "big")
    page = path.stat().st_size // page_size // 2
    with open(path, "r+b") as file:
        file.seek(page * page_size)
        file.write(b"\xa5" * page_size)
    return page + 1


def foreign_database(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT);"
                     "INSERT INTO photos (name) VALUES ('cat.jpg');")
    db.close()
    return path


BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), EmptyDatabase, "is empty (0 bytes)"),
    "garbage": (lambda p: p.write_bytes(os.urandom(8192)), NotADatabase, "is not an SQLite database"),
    "text": (lambda p: p.write_text("not a database\n" * 100), NotADatabase, "is not an SQLite database"),
    "truncated header": (lambda p: p.write_bytes(sound_database(p).read_bytes()[:60]), NotADatabase,
                         "is truncated (60 bytes, less than an SQLite header)"),
    "cut in half": (lambda p: p.write_bytes(sound_database(p).read_bytes()[:p.stat().st_size // 2]),
                    DamagedDatabase, "is damaged: "),
    "damaged page": (lambda p: damage_middle_page(sound_database(p)), DamagedDatabase, "is damaged: "),
    "foreign": (foreign_database, ForeignDatabase, "holds another program's tables (photos), not AIOS's"),
}


@pytest.fixture(params=list(BAD_FILES))
def bad_file(request, tmp_path):
    """(path, expected error class, the reason it names) for each kind of bad file."""
    make, kind, reason = BAD_FILES[request.param]
    path = tmp_path / "orchestrator.db"
    make(path)
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    return path, kind, reason


def test_a_bad_file_is_refused_with_one_line_and_left_as_it_was(bad_file):
    path, kind, reason = bad_file
    before = path.read_bytes()
    with pytest.raises(kind) as caught:
        open_store(str(path), "dev1")
    message = str(caught.value)
    assert message.startswith(f"state database {path} {reason}") and "\n" not in message
    assert message.endswith(f"; it was left as it is: {ADVICE}")
    assert isinstance(caught.value, BadDatabase) and isinstance(caught.value, StoreError)
    assert path.read_bytes() == before


def test_check_file_names_the_problem_of_each_bad_file(bad_file):
    path, kind, reason = bad_file
    before = path.read_bytes()
    problems = check_file(str(path))
    if kind is DamagedDatabase:   # what SQLite's quick_check says, or the error it stopped on
        assert problems and all(problems)
    else:
        assert problems[0].startswith(reason) and len(problems) == 1
    assert path.read_bytes() == before


def test_force_new_moves_a_bad_file_aside_with_its_log_and_begins_anew(bad_file):
    path, _, _ = bad_file
    before = path.read_bytes()
    Path(f"{path}-wal").write_bytes(b"")   # a side file travels with its database
    store = open_store(str(path), "dev1", force_new=True)
    aside = Path(store.moved_aside)
    assert aside.name.startswith("orchestrator.db.broken-") and aside.parent == path.parent
    assert aside.read_bytes() == before and Path(f"{aside}-wal").exists()
    assert store.pending_counts() == {} and store.check() == []
    store.add_trigger("j", now=T0)
    store.close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_force_new_leaves_a_sound_database_alone(tmp_path):
    path = sound_database(tmp_path / "orchestrator.db")
    store = open_store(str(path), "dev1", force_new=True)
    assert store.moved_aside is None and store.pending_counts() == {"llm": 300}
    store.close()
    assert [p.name for p in tmp_path.iterdir() if ".broken-" in p.name] == []


def test_two_bad_files_set_aside_in_one_second_keep_both(tmp_path):
    path = tmp_path / "orchestrator.db"
    names = set()
    for content in (b"first", b"second"):
        path.write_bytes(content)
        names.add(sqlite_file.move_aside(str(path), "broken"))
    assert len(names) == 2 and {Path(n).read_bytes() for n in names} == {b"first", b"second"}


def test_a_log_without_its_database_is_refused_not_replayed(tmp_path):
    path = sound_database(tmp_path / "orchestrator.db")
    writer = SqliteStore(str(path), "dev1")
    writer.add_trigger("acknowledged", now=T0)
    wal = Path(f"{path}-wal").read_bytes()   # a copy, as if the daemon had died here
    writer.close()
    path.unlink()
    Path(f"{path}-wal").write_bytes(wal)
    with pytest.raises(DamagedDatabase, match=r"is missing but its write-ahead log .*-wal is there"):
        open_store(str(path), "dev1")
    assert not path.exists()
    store = open_store(str(path), "dev1", force_new=True)
    assert Path(f"{store.moved_aside}-wal").read_bytes() == wal
    assert store.pending_counts() == {}
    store.close()


def test_a_table_missing_from_an_aios_database_is_damage(tmp_path):
    path = sound_database(tmp_path / "orchestrator.db")
    db = sqlite3.connect(path)
    db.execute("DROP TABLE runs")
    db.close()
    with pytest.raises(DamagedDatabase, match="lacks the table.s. runs"):
        open_store(str(path), "dev1")


def test_a_missing_file_is_created_whole_and_private(tmp_path):
    path = tmp_path / "new" / "orchestrator.db"
    store = open_store(str(path), "dev1")
    store.close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["orchestrator.db"]   # no partial left


# ---------------------------------------------------------------- damage met at run time

def test_damage_met_by_a_read_stops_every_write_and_check_reports_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_file, "CHECK_ON_OPEN_BYTES", 0)   # as for a database too large to check at open
    path = sound_database(tmp_path / "orchestrator.db", rows=2000)
    damage_middle_page(path)
    store = open_store(str(path), "dev1")   # the cheap open does not read that page
    with pytest.raises(DamagedDatabase) as caught:
        for job in ("web", None):
            store.recent_runs(job=job, limit=-1)
            store.recent_events(limit=-1)
            store.pending_triggers(limit=-1)
    assert "\n" not in str(caught.value) and "no more changes are written to it" in str(caught.value)
    with pytest.raises(DamagedDatabase, match="adding a trigger of 'j' was refused"):
        store.add_trigger("j", now=T0)
    with pytest.raises(DamagedDatabase):
        store.save_state(JobState(job="web"))
    assert store.check() != []
    store.close()


def test_damage_found_by_check_also_stops_every_write(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_file, "CHECK_ON_OPEN_BYTES", 0)
    path = sound_database(tmp_path / "orchestrator.db")
    damage_middle_page(path)
    store = open_store(str(path), "dev1")
    assert store.check() != []
    with pytest.raises(DamagedDatabase, match="adding a trigger of 'j' was refused"):
        store.add_trigger("j", now=T0)
    store.close()


# ---------------------------------------------------------------- backup and restore

def test_backup_and_restore_round_trip(tmp_path):
    path = sound_database(tmp_path / "orchestrator.db")
    live = SqliteStore(str(path), "dev1")
    live.add_trigger("after", now=T0)            # in the WAL, not yet in the file: copied too
    copy = tmp_path / "backups" / "copy.db"
    copy.parent.mkdir()
    backup(str(path), str(copy))
    assert check_file(str(copy)) == [] and copy.stat().st_mode & 0o777 == 0o600
    with pytest.raises(StoreError, match="File exists"):
        backup(str(path), str(copy))             # never replaces a file
    live.add_trigger("lost by the restore", now=T0)
    live.close()
    aside = restore(str(copy), str(path))
    assert Path(aside).name.startswith("orchestrator.db.replaced-")
    store = open_store(str(path), "dev1")
    assert store.pending_counts() == {"llm": 300, "after": 1}
    store.close()
    kept = open_store(aside, "dev1")
    assert kept.pending_counts()["lost by the restore"] == 1
    kept.close()


def test_restore_refuses_a_bad_or_foreign_source_and_changes_nothing(tmp_path, bad_file):
    source, _, _ = bad_file
    path = sound_database(tmp_path / "home.db")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=f"{source} cannot be restored: "):
        restore(str(source), str(path))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".replaced-" in p.name] == []


def test_restore_refuses_a_database_without_aios_tables(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).executescript("CREATE TABLE t (x); DROP TABLE t;")
    with pytest.raises(StoreError, match="holds no AIOS tables: nothing to restore"):
        restore(str(empty), str(tmp_path / "orchestrator.db"))


def test_restore_into_a_home_without_a_database(tmp_path):
    copy = sound_database(tmp_path / "copy.db")
    path = tmp_path / "home" / "orchestrator.db"
    path.parent.mkdir()
    assert restore(str(copy), str(path)) is None
    store = open_store(str(path), "dev1")
    assert store.load_states()["web"].pid == 42
    store.close()
