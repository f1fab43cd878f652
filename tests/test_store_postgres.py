"""What only the PostgreSQL store has: migrations, LISTEN/NOTIFY wake-ups, reconnecting,
the password kept out of every message, session limits, and many devices claiming at once.
Also the store verbs added beside the fleet's (meta, pending/dropped triggers, bounded
prune, check) on PostgreSQL.

A real server (tests/pg.py: pgserver, or AIOS_TEST_PG_DSN); each test has its own schema.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aios.spec import Event, JobState, Run
from aios.store import WAKEUP_LOST, StoreError, open_store
from tests import pg

psycopg = pg.need_psycopg()
from aios.store import pg_link, pg_schema  # noqa: E402 - they import psycopg
from aios.store.postgres import PostgresStore  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0
LIVENESS = 30.0


@pytest.fixture
def opened(pg_url):
    """Opens stores on the test's schema; closes them all at the end."""
    stores = []

    def make(device: str = "dev1", url: str | None = None, **options) -> PostgresStore:
        stores.append(PostgresStore(url or pg_url, device, **options))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


def query(url: str, statement: str, params=()) -> list:
    """One statement on a connection of its own, as another program would send it."""
    with psycopg.connect(url, autocommit=True) as db:
        cursor = db.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def wait_readable(fd: int, timeout: float = LIVENESS) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        assert selector.select(timeout), f"fd {fd} did not become readable within {timeout} s"


def next_wakeup(store: PostgresStore) -> frozenset:
    """The first non-empty drain: the descriptor also turns readable for the store's own
    notifications, which drain_wakeups() leaves out."""
    deadline = time.monotonic() + LIVENESS
    while time.monotonic() < deadline:
        wait_readable(store.wakeup_fd(), deadline - time.monotonic())
        if changed := store.drain_wakeups():
            return changed
    raise AssertionError(f"no wake-up within {LIVENESS} s")


def backend_pids(store: PostgresStore) -> list[int]:
    rows = query(pg.server_dsn(), "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                 (f"aios {store.device}",))
    return [pid for (pid,) in rows]


# ---------------------------------------------------------------- opening, migrations

def test_open_store_takes_a_postgres_url(pg_url):
    store = open_store(pg_url, "dev1")
    try:
        assert isinstance(store, PostgresStore) and store.fleet
        assert store.check() == []
    finally:
        store.close()


def test_without_psycopg_the_error_says_what_to_install(pg_url):
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from aios.store import open_store, StoreError\n"
            f"try: open_store({pg_url!r}, 'd')\n"
            "except StoreError as exc: print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout == "fleet mode needs psycopg: pip install 'aios[fleet]'\n", out.stderr


def test_a_fleet_daemons_store_waits_at_most_a_quarter_of_the_lease_ttl(pg_url):
    stores = [open_store(pg_url, "dev1", lease_ttl=ttl) for ttl in (2.0, 60.0)]
    try:
        assert [store.timeout for store in stores] == [0.5, 5.0]
    finally:
        for store in stores:
            store.close()


def test_a_new_schema_gets_every_table_and_notify_trigger(opened, pg_url):
    opened()
    tables = {name for (name,) in query(pg_url, "SELECT tablename FROM pg_tables "
                                                "WHERE schemaname = current_schema()")}
    assert tables == set(pg_schema.TABLES)
    assert query(pg_url, "SELECT version FROM schema_version ORDER BY version") == [
        (version,) for version in range(1, pg_schema.SCHEMA_VERSION + 1)]


def test_daemons_opening_a_new_schema_together_migrate_it_once(pg_url):
    stores, errors, start = [], [], threading.Barrier(6)

    def open_one(n: int) -> None:
        start.wait()
        try:
            stores.append(PostgresStore(pg_url, f"dev{n}"))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIVENESS)
    try:
        assert errors == [] and len(stores) == 6
        assert query(pg_url, "SELECT version FROM schema_version ORDER BY version") == [
            (version,) for version in range(1, pg_schema.SCHEMA_VERSION + 1)], "each migration once"
        stores[0].add_trigger("j", now=T0)
        assert stores[5].claim_trigger("j", T0).id is not None
    finally:
        for store in stores:
            store.close()


def test_the_shared_job_tables_of_version_2_become_each_devices_own(opened, pg_url):
    with psycopg.connect(pg_url, autocommit=True) as db:     # a store as AIOS left it before version 3
        db.execute(pg_schema.CREATE_VERSION_TABLE)
        for version, statements in enumerate(pg_schema.MIGRATIONS[:2], start=1):
            for statement in statements:
                db.execute(statement)
            db.execute(pg_schema.RECORD_VERSION, (version,))
        db.execute("INSERT INTO devices VALUES ('a', '{}', 'old', 0, now()), ('b', '{}', 'old', 0, now())")
        db.execute("""INSERT INTO jobs VALUES ('web', 0, '{"type": "always"}', 1), """
                   """('ping', 1, '{"type": "idle"}', 2)""")
    a, b = opened("a"), opened("b")
    assert list(a.load_specs()) == list(b.load_specs()) == ["web", "ping"]
    a.save_specs({"only_a": {"type": "trigger"}})
    assert a.load_specs() == {"only_a": {"type": "trigger"}} and list(b.load_specs()) == ["web", "ping"]


def test_a_newer_schema_is_refused(opened, pg_url):
    opened().close()
    query(pg_url, "INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(StoreError, match=rf"schema version 99, newer than this AIOS knows "
                                         rf"\({pg_schema.SCHEMA_VERSION}\): upgrade AIOS"):
        opened()


def test_a_normal_open_needs_no_right_to_change_the_schema(opened, pg_url):
    """Daemons may run as a role that can only read and write rows once the schema exists."""
    opened().close()
    schema = pg_url.rsplit("%3D", 1)[1]
    role = f"r_{schema}"[:63]
    query(pg.server_dsn(), f'CREATE ROLE "{role}" LOGIN')
    try:
        query(pg.server_dsn(), f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"; '
                               f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
        store = opened(url=pg_url.replace("postgres:@", f"{role}@").replace("://postgres@", f"://{role}@"))
        store.add_trigger("j", now=T0)
        assert store.claim_trigger("j", T0) is not None
        store.save_state(JobState(job="a"))
        assert set(store.load_states()) == {"a"}
        store.close()
    finally:
        query(pg.server_dsn(), f'DROP OWNED BY "{role}"; DROP ROLE "{role}"')


def test_a_missing_schema_is_named(pg_dsn):
    with pytest.raises(StoreError, match="no schema of the search_path exists; create it first"):
        PostgresStore(pg.with_search_path(pg_dsn, "no_such_schema_here"), "dev1")


# ---------------------------------------------------------------- wake-ups

def test_another_programs_insert_wakes_the_store(opened, pg_url):
    store = opened()
    fd = store.wakeup_fd()
    assert store.drain_wakeups() == frozenset()
    query(pg_url, "INSERT INTO triggers (job) VALUES ('ext')")
    assert next_wakeup(store) == {"triggers"}
    assert store.pending_counts() == {"ext": 1}
    assert store.wakeup_fd() == fd


def test_only_other_connections_commits_wake(opened):
    store, other = opened("one"), opened("two")
    store.wakeup_fd()
    store.add_trigger("mine", now=T0)           # own commits: left out
    store.save_state(JobState(job="mine"))
    other.add_event(Event(ts=T0, name="theirs"))
    assert next_wakeup(store) == {"events"}     # notifications arrive in commit order


def test_a_claim_that_finds_nothing_wakes_nobody(opened):
    store, other = opened("one"), opened("two")
    store.wakeup_fd()
    assert other.claim_trigger("j", T0) is None
    other.add_event(Event(ts=T0, name="marker"))
    assert next_wakeup(store) == {"events"}


def test_commands_wake_their_device(opened):
    target, sender = opened("target"), opened("sender")
    target.wakeup_fd()
    command_id = sender.send_command("target", "restart", {"job": "web"})
    assert "commands" in next_wakeup(target)
    assert [c.id for c in target.take_commands("target")] == [command_id]


# ---------------------------------------------------------------- lost connections

def test_a_lost_connection_fails_one_call_then_reconnects(opened):
    store = opened("lossy")
    store.save_state(JobState(job="a"))
    query(pg.server_dsn(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = 'aios lossy'")
    with pytest.raises(StoreError) as raised:
        store.save_state(JobState(job="b"))
    assert str(raised.value).startswith("saving state of 'b' failed: ")
    assert "\n" not in str(raised.value)
    store.save_state(JobState(job="b"))
    assert set(store.load_states()) == {"a", "b"}


def test_a_lost_listener_is_reported_and_replaced(opened, pg_url):
    store = opened("listener")
    store.wakeup_fd()
    listener_pid = [pid for pid in backend_pids(store) if pid != store._own_pid()]
    query(pg.server_dsn(), "SELECT pg_terminate_backend(%s)", (listener_pid[0],))
    assert next_wakeup(store) == WAKEUP_LOST
    store.wakeup_fd()                           # a new listening connection
    deadline = time.monotonic() + LIVENESS      # (the old backend may still be exiting)
    while listener_pid[0] in backend_pids(store) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(backend_pids(store)) == 2 and listener_pid[0] not in backend_pids(store)
    query(pg_url, "INSERT INTO triggers (job) VALUES ('after')")
    assert next_wakeup(store) == {"triggers"}


def test_changed_after_a_lost_listener_says_yes(opened):
    store = opened("changes")
    assert store.changed() is False
    for pid in backend_pids(store):
        if pid != store._own_pid():
            query(pg.server_dsn(), "SELECT pg_terminate_backend(%s)", (pid,))
    assert store.changed() is True    # what happened meanwhile is unknown
    assert store.changed() is False


def test_a_locked_row_gives_store_error_not_a_hang(opened, pg_url):
    store = opened(timeout=0.5)
    store.save_state(JobState(job="a"))
    with psycopg.connect(pg_url) as locker:
        locker.execute("SELECT * FROM job_state FOR UPDATE")
        with pytest.raises(StoreError, match="^saving state of 'a' failed: "):
            store.save_state(JobState(job="a", why="blocked"))
        locker.rollback()
    store.save_state(JobState(job="a", why="free"))
    assert store.load_states()["a"].why == "free"


def test_a_server_that_stops_answering_gives_store_error_not_a_hang(opened):
    """The deadline on every call: a frozen backend (as behind a paused network) cannot
    hold the daemon; the next call after it answers again opens a new connection."""
    store = opened("frozen", timeout=0.5)
    store.save_state(JobState(job="a"))
    if not pg_link.DEADLINES and not os.environ.get("CI"):
        pytest.skip("this psycopg has no deadline on waits; pip install -U 'psycopg[binary]'")
    (pid,) = [p for p in backend_pids(store) if p == store._own_pid()]
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(StoreError, match=r"^loading job states failed: no answer from the "
                                             r"database within 0.5 s$"):
            store.load_states()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert set(store.load_states()) == {"a"}
    assert store._own_pid() != pid


# ---------------------------------------------------------------- secrets

SECRET = "zz-Pass-w0rd-zz"


def test_the_password_is_in_no_message_and_no_repr(pg_dsn):
    dead = f"postgresql://aios:{SECRET}@127.0.0.1:1/fleet"
    with pytest.raises(StoreError) as raised:
        PostgresStore(dead, "dev1", timeout=2)
    assert SECRET not in str(raised.value) and "127.0.0.1" in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    echoed = pg_dsn.replace("postgres:@", f"postgres:{SECRET}@").replace("/postgres?", f"/{SECRET}?")
    with pytest.raises(StoreError) as raised:   # the server names the database: the password
        PostgresStore(echoed, "dev1")
    assert SECRET not in str(raised.value) and "***" in str(raised.value)


def test_a_live_store_never_shows_its_password(pg_url):
    url = pg_url.replace("postgres:@", f"postgres:{SECRET}@")
    assert SECRET in url
    store = PostgresStore(url, "dev1")
    try:
        assert SECRET not in repr(store) and SECRET not in store.url
        with pytest.raises(StoreError) as raised:
            store.save_state(JobState(job="x\0y"))
        assert SECRET not in str(raised.value)
    finally:
        store.close()


def test_password_file_must_be_private(pg_url, tmp_path):
    secret = tmp_path / "db-password"
    secret.write_text(f"{SECRET}\n")
    secret.chmod(0o644)
    with pytest.raises(StoreError, match="can be read by other users; chmod 600") as raised:
        PostgresStore(pg_url, "dev1", password_file=str(secret))
    assert SECRET not in str(raised.value)
    secret.chmod(0o600)
    PostgresStore(pg_url, "dev1", password_file=str(secret)).close()
    with pytest.raises(StoreError, match="cannot be read"):
        PostgresStore(pg_url, "dev1", password_file=str(tmp_path / "missing"))


# ---------------------------------------------------------------- hostile input

@pytest.mark.parametrize("job", ["nul\0byte", "lone\udcffsurrogate"])
def test_unstorable_text_is_a_one_line_store_error(opened, job):
    store = opened()
    with pytest.raises(StoreError) as raised:
        store.add_trigger(job, now=T0)
    assert str(raised.value).startswith("adding a trigger of ") and "\n" not in str(raised.value)
    assert store.pending_counts() == {}


@pytest.mark.parametrize("kwargs", ["[1, 2]", '"text"', "not json {"])
def test_another_programs_bad_kwargs_are_claimed_as_none_for_the_engine_to_reject(opened, pg_url, kwargs):
    store = opened()
    query(pg_url, "INSERT INTO triggers (job, args, kwargs) VALUES ('ext', '[\"x\"]', %s)", (kwargs,))
    query(pg_url, "INSERT INTO triggers (job, args) VALUES ('ext', 'plain words')")
    bad = store.claim_trigger("ext", T0)
    assert (bad.args, bad.kwargs) == (("x",), None)
    store.finish_trigger(bad.id, "rejected: kwargs is not a JSON object", T0)
    trigger = store.claim_trigger("ext", T0)
    assert (trigger.args, trigger.kwargs) == (("plain words",), {})
    assert query(pg_url, "SELECT done, outcome FROM triggers ORDER BY id LIMIT 1") == [
        (1, "rejected: kwargs is not a JSON object")]


def test_another_programs_row_gets_the_database_time(opened, pg_url):
    store = opened()
    now = query(pg_url, "SELECT extract(epoch FROM now())::float8")[0][0]
    query(pg_url, "INSERT INTO triggers (job) VALUES ('ext')")
    assert abs(store.claim_trigger("ext", T0).created - now) < 120


# ---------------------------------------------------------------- many devices at once

CLAIMER = """
import json, sys
from aios.store.postgres import PostgresStore
store = PostgresStore(sys.argv[1], sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
got = []
while (trigger := store.claim_trigger("race", 1.0)) is not None:
    got.append(trigger.id)
print(json.dumps(got))
"""


def test_three_devices_claim_a_thousand_triggers_each_exactly_once(opened, pg_url):
    store = opened()
    with store.batch(durable=True):
        ids = [store.add_trigger("race", [i], now=T0).id for i in range(1000)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, pg_url, f"proc{n}"], env=env, cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for n in range(3)]
    assert [proc.stdout.readline() for proc in procs] == ["ready\n"] * 3
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    claimed = [trigger_id for got in results for trigger_id in got]
    assert sorted(claimed) == ids                     # every one, none twice
    assert all(got == sorted(got) for got in results)  # each device took them oldest first
    rows = dict(query(pg_url, "SELECT id, device FROM triggers"))
    for n, got in enumerate(results):
        assert {rows[i] for i in got} <= {f"proc{n}"}


def test_two_stores_in_threads_claim_each_trigger_once(opened):
    one, two = opened("one"), opened("two")
    with one.batch(durable=True):
        ids = [one.add_trigger("race", now=T0).id for _ in range(300)]
    results = {"one": [], "two": []}

    def claim(store):
        while (trigger := store.claim_trigger("race", T0)) is not None:
            results[store.device].append(trigger.id)

    threads = [threading.Thread(target=claim, args=(s,)) for s in (one, two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIVENESS)
    assert sorted(results["one"] + results["two"]) == ids


# ---------------------------------------------------------------- the added verbs

def test_meta_round_trips_and_replaces(opened):
    store = opened()
    assert store.meta_get("boot_id") is None
    store.meta_set("boot_id", "abc")
    store.meta_set("boot_id", "def")
    assert store.meta_get("boot_id") == "def"


def test_pending_triggers_are_unclaimed_not_done_oldest_first(opened):
    store = opened()
    a1 = store.add_trigger("a", [1], {"k": 1}, now=T0)
    b1 = store.add_trigger("b", now=T0 + 1)
    a2 = store.add_trigger("a", [2], now=T0 + 2)
    a3 = store.add_trigger("a", now=T0 + 3)
    store.claim_trigger("a", T0 + 4)
    store.finish_trigger(a3.id, "ok", T0 + 5)
    assert store.pending_triggers() == [b1, a2]
    assert store.pending_triggers(job="a") == [a2]
    assert store.pending_triggers(limit=1) == [b1]
    assert a1.id not in [t.id for t in store.pending_triggers()]


def test_drop_triggers_marks_unclaimed_ones_done_as_dropped(opened):
    store = opened()
    first, second, third = (store.add_trigger("a", now=T0) for _ in range(3))
    other = store.add_trigger("b", now=T0)
    claimed = store.claim_trigger("a", T0)
    assert claimed.id == first.id
    assert store.drop_triggers("a", third.id, T0 + 1) == 1
    assert store.get_trigger(third.id).outcome == "dropped" and store.get_trigger(third.id).done
    assert store.drop_triggers("a", None, T0 + 2) == 1     # `second`; `first` is running
    assert store.pending_counts() == {"b": 1}
    assert store.drop_triggers("a", other.id, T0 + 3) == 0  # not a trigger of "a"
    assert not store.get_trigger(first.id).done


def test_prune_deletes_at_most_limit_rows_per_table(opened):
    store = opened()
    for i in range(5):
        run = store.start_run(Run(job="a", started=T0 + i))
        store.finish_run(Run(job="a", started=T0 + i, id=run.id, ended=T0 + i + 1))
        store.add_event(Event(ts=T0 + i, name="old"))
    assert store.prune(before=T0 + 100, limit=2) == 4
    assert store.prune(before=T0 + 100, limit=2) == 4
    assert store.prune(before=T0 + 100, limit=2) == 2
    assert store.prune(before=T0 + 100, limit=2) == 0
    assert store.recent_runs() == [] and store.recent_events() == []


def test_event_data_and_run_epoch_round_trip(opened):
    store = opened()
    data = {"exit": 1, "argv": ["a", "b"], "nested": {"x": None}}
    event_id = store.add_event(Event(ts=T0, name="job_failed", data=data))
    assert store.recent_events()[0] == Event(ts=T0, name="job_failed", data=data, device="dev1", id=event_id)
    run = store.start_run(Run(job="fleet_job", started=T0, epoch=7))
    assert store.get_run(run.id).epoch == 7


def test_job_state_keeps_the_boot_of_its_last_slot(opened):
    store = opened()
    state = JobState(job="daily", last_slot=T0, slot_boot=T0 - 3600.5, boot_id="6f2c-boot")
    store.save_state(state)
    assert store.load_states() == {"daily": state}


def test_check_names_a_missing_notify_trigger(opened, pg_url):
    store = opened()
    assert store.check() == []
    query(pg_url, "DROP TRIGGER triggers_notify ON triggers")
    assert len(store.check()) == 1 and "'triggers' has no notify trigger" in store.check()[0]


def test_check_reports_an_unreachable_database(opened):
    store = opened("gone")
    store.close()
    assert store.check() == ["reading the schema version failed: the store is closed"]


# ---------------------------------------------------------------- URLs and passwords (pure)

@pytest.mark.parametrize("url, clean, password", [
    ("postgresql://aios:p%40ss@db:5432/fleet?sslmode=require",
     "postgresql://aios@db:5432/fleet?sslmode=require", "p@ss"),
    ("postgresql://aios@db/fleet", "postgresql://aios@db/fleet", None),
    ("postgresql:///fleet?host=/run/pg&password=q%26r", "postgresql:///fleet?host=/run/pg", "q&r"),
    ("postgres://aios:@db1,db2/fleet", "postgres://aios@db1,db2/fleet", None),
    ("postgresql://aios:a:b@db/fleet?options=-csearch_path%3Dx", "postgresql://aios@db/fleet?options=-csearch_path%3Dx",
     "a:b"),
])
def test_split_password_keeps_the_rest_of_the_url_as_written(url, clean, password):
    assert pg_link.split_password(url) == (clean, password)
    assert pg_link.redact(url) == clean


def test_scrub_removes_every_form_of_the_password_and_joins_lines():
    text = "failed: database \"p@ss w\" does not exist\n\tuser p%40ss%20w"
    assert pg_link.scrub(text, "p@ss w") == 'failed: database "***" does not exist user ***'
    assert pg_link.scrub("a\nb", None) == "a b"


def test_the_password_comes_from_the_file_else_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("AIOS_DB_PASSWORD", raising=False)
    assert pg_link.read_password(None) is None
    monkeypatch.setenv("AIOS_DB_PASSWORD", "from-env")
    assert pg_link.read_password(None) == "from-env"
    secret = tmp_path / "pw"
    secret.write_text("from-file\r\nignored\n")
    secret.chmod(0o600)
    assert pg_link.read_password(str(secret)) == "from-file"
    secret.write_text("\n")
    with pytest.raises(StoreError, match="holds no password on its first line"):
        pg_link.read_password(str(secret))
    link = tmp_path / "link"
    link.symlink_to(secret)
    with pytest.raises(StoreError, match="cannot be read"):
        pg_link.read_password(str(link))
