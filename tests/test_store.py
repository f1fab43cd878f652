"""The Store contract, run on every backend in BACKENDS (a factory `make(folder, device)`:
stores made on one folder share one database), then what only SQLite has: external
inserts into `triggers`, migrations, locks, file permissions.

Real databases in tmp_path, no mocks. Times are fixed numbers, never the clock.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
from calendar import timegm
from aios.spec import replace
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from aios.spec import Event, JobState, Outcome, Run, Status
from aios.store import StoreError, open_store
from aios.store.memory import MemoryDatabase, MemoryStore
from aios.store.sqlite import _PENDING_TRIGGERS, _PRUNE, SCHEMA_VERSION, SqliteStore
from aios.store.sqlite_schema import TABLES
from tests import pg

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0


def sqlite_backend(folder: Path, device: str):
    return SqliteStore(str(folder / "state.db"), device)


def memory_backend(folder: Path, device: str):
    """Stores on one folder share its in-memory database, as they share a file."""
    return open_store(f"memory:{folder}", device)


def postgres_backend(folder: Path, device: str):
    from aios.store.postgres import PostgresStore

    return PostgresStore(pg.schema_url(pg.schema_for(folder)), device)


BACKENDS = [pytest.param(sqlite_backend, id="sqlite"), pytest.param(memory_backend, id="memory"),
            pytest.param(postgres_backend, id="postgres")]


@pytest.fixture(params=BACKENDS)
def make_store(request, tmp_path):
    """Opens stores on one fresh database: another device, or another process's view."""
    opened = []

    def make(device: str = "dev1"):
        opened.append(request.param(tmp_path, device))
        return opened[-1]

    yield make
    for store in opened:
        try:
            store.close()
        except StoreError:
            pass


@pytest.fixture
def store(make_store):
    return make_store()


def run_of(job: str, started: float, **fields) -> Run:
    return Run(job=job, started=started, **fields)


# ---------------------------------------------------------------- job specs

def test_specs_round_trip_and_replace(store):
    tables = {"web": {"type": "always", "command": ["sleep", "9"], "env": {"A": "1"}},
              "backup": {"type": "daily", "time": "03:00", "tags": ["gpu"]}}
    assert store.load_specs() == {}
    store.save_specs(tables)
    assert store.load_specs() == tables
    store.save_specs({"backup": {"type": "daily", "time": "04:00"}})
    assert store.load_specs() == {"backup": {"type": "daily", "time": "04:00"}}


# ---------------------------------------------------------------- job state

FULL_STATE = JobState(
    job="backup", status=Status.BACKOFF, why="exited 1; restarting in 4 s", since=T0 + 0.25,
    pid=4242, run_id=17, attempts=3, restarts=2, next_due=T0 + 60.5, last_slot=T0 - 3600.0,
    slot_boot=12345.678, boot_id="5c6d1f1e-8a39-4c2e-9a55-0f8e5a0b7c11",
    draw_day="2024-03-31", draw_at=T0 + 7200.125, enabled=False)


def test_state_round_trips_every_field(store):
    store.save_state(FULL_STATE)
    assert store.load_states() == {"backup": FULL_STATE}


@pytest.mark.parametrize("enabled", [None, True, False])
def test_state_enabled_keeps_none_true_false(store, enabled):
    store.save_state(JobState(job="j", enabled=enabled))
    assert store.load_states()["j"].enabled is enabled


def test_state_every_status_round_trips(store):
    for status in Status:
        store.save_state(JobState(job=status.value, status=status))
    assert {name: s.status for name, s in store.load_states().items()} == {
        s.value: s for s in Status}


def test_save_state_replaces(store):
    store.save_state(FULL_STATE)
    store.save_state(JobState(job="backup", status=Status.RUNNING, pid=7))
    assert store.load_states() == {"backup": JobState(job="backup", status=Status.RUNNING, pid=7)}


def test_states_belong_to_their_device_and_clear_forgets_only_them(make_store):
    one, two = make_store("one"), make_store("two")
    one.save_state(JobState(job="a"))
    two.save_state(JobState(job="b"))
    assert set(one.load_states()) == {"a"} and set(two.load_states()) == {"b"}
    one.clear_states()
    assert one.load_states() == {}
    assert set(two.load_states()) == {"b"}


# ---------------------------------------------------------------- runs

def test_start_run_assigns_id_and_device(store):
    first = store.start_run(run_of("a", T0, pid=10, pid_start=999, attempt=2, due=T0 - 1))
    second = store.start_run(run_of("a", T0 + 1))
    assert first.id is not None and second.id > first.id
    assert first.device == "dev1"
    assert store.open_runs() == [first, second]


def test_finish_run_records_the_end(store):
    run = store.start_run(run_of("a", T0, pid=10))
    ended = replace(run, ended=T0 + 5, exit_code=None, signal=9, outcome=Outcome.KILLED)
    store.finish_run(ended)
    assert store.open_runs() == []
    assert store.recent_runs() == [ended]
    assert store.recent_runs()[0].outcome is Outcome.KILLED


def test_set_run_pid_records_the_process(store):
    run = store.start_run(run_of("a", T0))
    store.set_run_pid(run.id, 4321, 987654)
    assert store.open_runs() == [replace(run, pid=4321, pid_start=987654)]
    store.set_run_pid(run.id, 4322, None)
    assert (store.open_runs()[0].pid, store.open_runs()[0].pid_start) == (4322, None)


def test_open_runs_are_this_devices_unended_runs(make_store):
    one, two = make_store("one"), make_store("two")
    open_one = one.start_run(run_of("a", T0))
    ended = one.start_run(run_of("a", T0 + 1))
    one.finish_run(_ended(ended, T0 + 2))
    two.start_run(run_of("a", T0 + 3))
    assert one.open_runs() == [open_one]


def test_recent_runs_newest_first_by_job_since_and_limit(store):
    runs = [store.start_run(run_of(job, T0 + i)) for i, job in enumerate("abab")]
    assert store.recent_runs() == runs[::-1]
    assert store.recent_runs(job="a") == [runs[2], runs[0]]
    assert store.recent_runs(since=T0 + 2) == [runs[3], runs[2]]
    assert store.recent_runs(job="b", since=T0 + 2) == [runs[3]]
    assert store.recent_runs(limit=1) == [runs[3]]


def test_last_runs_is_the_latest_of_each_job_on_this_device(make_store):
    one, two = make_store("one"), make_store("two")
    one.start_run(run_of("a", T0))
    latest_a = one.start_run(run_of("a", T0 + 10))
    latest_b = one.start_run(run_of("b", T0 + 5))
    two.start_run(run_of("a", T0 + 20))
    two.start_run(run_of("c", T0 + 20))
    assert one.last_runs() == {"a": latest_a, "b": latest_b}


def test_finish_run_without_id_is_refused(store):
    with pytest.raises(ValueError):
        store.finish_run(run_of("a", T0, ended=T0 + 1))


# ---------------------------------------------------------------- triggers

def test_add_trigger_returns_the_queued_trigger(store):
    trigger = store.add_trigger("job", ["x", 2], {"k": "v"}, now=T0)
    assert trigger.id is not None and trigger.job == "job"
    assert (trigger.args, trigger.kwargs, trigger.created) == (("x", 2), {"k": "v"}, T0)
    assert not trigger.done and trigger.claimed is None
    assert store.pending_counts() == {"job": 1}


def test_claim_is_fifo_per_job_and_returns_args(store):
    ids = {"a": [], "b": []}
    for i, job in enumerate("abaab"):
        ids[job].append(store.add_trigger(job, [i], {"n": i}, now=T0 + i).id)
    claimed = [store.claim_trigger("a", T0 + 10) for _ in range(3)]
    assert [t.id for t in claimed] == ids["a"]
    assert [t.args for t in claimed] == [(0,), (2,), (3,)]
    assert [t.kwargs for t in claimed] == [{"n": 0}, {"n": 2}, {"n": 3}]
    assert claimed[0].created == T0 and claimed[0].claimed == T0 + 10
    assert claimed[0].device == "dev1" and not claimed[0].done
    assert store.claim_trigger("a", T0 + 11) is None
    assert store.pending_counts() == {"b": 2}
    assert store.claim_trigger("b", T0 + 12).id == ids["b"][0]


def test_claim_of_unknown_job_is_none(store):
    assert store.claim_trigger("nothing", T0) is None


def test_two_stores_never_claim_the_same_trigger(make_store):
    one, two = make_store("one"), make_store("two")
    ids = [one.add_trigger("j", [i], now=T0).id for i in range(10)]
    got = []
    for i in range(12):
        claimer = (one, two)[i % 2]
        trigger = claimer.claim_trigger("j", T0 + i)
        if trigger is not None:
            assert trigger.device == claimer.device
            got.append(trigger.id)
    assert got == ids


def test_finish_trigger_exactly_once(store):
    trigger = store.add_trigger("RESTART_ALL", now=T0)
    assert store.pending_counts() == {"RESTART_ALL": 1}
    assert store.finish_trigger(trigger.id, "done", T0 + 1) is True
    assert store.finish_trigger(trigger.id, "again", T0 + 2) is False
    assert store.pending_counts() == {}
    assert store.claim_trigger("RESTART_ALL", T0 + 3) is None


def test_finish_trigger_of_unknown_id_is_false(store):
    assert store.finish_trigger(12345, "ok", T0) is False


def test_finish_run_completes_its_trigger_once(store):
    store.add_trigger("j", now=T0)
    claimed = store.claim_trigger("j", T0)
    run = store.start_run(run_of("j", T0 + 1, trigger_id=claimed.id))
    store.finish_run(_ended(run, T0 + 2), finish_trigger=True)
    assert store.finish_trigger(claimed.id, "again", T0 + 3) is False
    store.finish_run(_ended(run, T0 + 4, Outcome.FAILED), finish_trigger=True)
    assert store.release_claims() == 0
    assert store.pending_counts() == {}


def test_get_trigger_and_get_run_show_how_a_trigger_ended(store):
    added = store.add_trigger("j", ["a", 1], {"k": "v"}, now=T0)
    assert store.get_trigger(added.id) == replace(added, done=False)
    claimed = store.claim_trigger("j", T0 + 1)
    run = store.start_run(run_of("j", T0 + 1, trigger_id=claimed.id))
    store.finish_run(_ended(run, T0 + 2, Outcome.FAILED), finish_trigger=True)
    done = store.get_trigger(added.id)
    assert (done.done, done.outcome, done.run_id, done.claimed) == (True, "failed", run.id, T0 + 1)
    assert store.get_run(run.id).outcome is Outcome.FAILED
    assert store.get_trigger(added.id + 100) is None and store.get_run(run.id + 100) is None


def test_finish_run_without_finish_trigger_leaves_it_claimed(store):
    store.add_trigger("j", now=T0)
    claimed = store.claim_trigger("j", T0)
    run = store.start_run(run_of("j", T0 + 1, trigger_id=claimed.id))
    store.finish_run(_ended(run, T0 + 2))
    assert store.pending_counts() == {}
    assert store.finish_trigger(claimed.id, "ok", T0 + 3) is True


def test_release_claims_returns_all_but_kept_of_this_device(make_store):
    one, two = make_store("one"), make_store("two")
    ids = [one.add_trigger("j", [i], now=T0).id for i in range(5)]
    mine = [one.claim_trigger("j", T0 + 1) for _ in range(3)]
    theirs = two.claim_trigger("j", T0 + 1)
    one.finish_trigger(mine[2].id, "ok", T0 + 2)
    assert one.release_claims(keep={mine[1].id}) == 1
    assert one.pending_counts() == {"j": 2}
    assert one.claim_trigger("j", T0 + 3).id == ids[0]
    assert theirs.id == ids[3]
    assert one.release_claims() == 2
    assert two.release_claims() == 1
    assert one.pending_counts() == {"j": 4}


def test_requeue_trigger_returns_one_claim_to_the_head_of_the_queue(make_store):
    one, two = make_store("one"), make_store("two")
    ids = [one.add_trigger("j", [i], now=T0).id for i in range(3)]
    first, second = one.claim_trigger("j", T0), one.claim_trigger("j", T0)
    one.requeue_trigger(first.id)
    assert one.pending_counts() == {"j": 2}
    assert one.claim_trigger("j", T0 + 1).id == ids[0]
    two.requeue_trigger(second.id)               # not its claim: nothing happens
    one.finish_trigger(first.id, "ok", T0 + 2)
    one.requeue_trigger(first.id)                # done stays done
    assert one.pending_counts() == {"j": 1}
    assert one.release_claims() == 1             # only `second` was still claimed


def test_pending_triggers_lists_the_queue_oldest_first(store):
    ids = [store.add_trigger(job, [i], {"i": i}, now=T0 + i).id for i, job in enumerate("abcab")]
    store.claim_trigger("a", T0 + 9)                        # claimed: not pending
    store.finish_trigger(ids[2], "ok", T0 + 9)              # done: not pending
    pending = store.pending_triggers()
    assert [t.id for t in pending] == [ids[1], ids[3], ids[4]]
    assert (pending[0].job, pending[0].args, pending[0].kwargs, pending[0].created) == ("b", (1,), {"i": 1}, T0 + 1)
    assert not pending[0].done and pending[0].claimed is None
    assert [t.id for t in store.pending_triggers("b")] == [ids[1], ids[4]]
    assert [t.id for t in store.pending_triggers(limit=2)] == [ids[1], ids[3]]
    assert store.pending_triggers("no-such-job") == []


def test_drop_triggers_marks_pending_ones_dropped_and_keeps_them(store):
    a1, a2, a3 = (store.add_trigger("a", [i], now=T0).id for i in range(3))
    b1 = store.add_trigger("b", now=T0).id
    claimed = store.claim_trigger("a", T0 + 1)              # a1, claimed: not dropped
    assert store.drop_triggers("a", a3, T0 + 2) == 1
    assert store.drop_triggers("a", b1, T0 + 2) == 0        # not a trigger of `a`
    assert store.drop_triggers("a", None, T0 + 3) == 1      # a2
    assert store.drop_triggers("a", None, T0 + 4) == 0
    assert store.pending_counts() == {"b": 1}
    for trigger_id in (a2, a3):
        dropped = store.get_trigger(trigger_id)
        assert (dropped.done, dropped.outcome, dropped.run_id) == (True, "dropped", None)
    assert store.get_trigger(claimed.id).done is False and claimed.id == a1
    assert store.finish_trigger(a2, "ok", T0 + 5) is False   # dropped is done


def test_clear_triggers_drops_every_trigger_not_done(store):
    done = store.add_trigger("j", now=T0)
    store.finish_trigger(done.id, "ok", T0)
    store.add_trigger("j", now=T0)
    store.add_trigger("k", now=T0)
    store.claim_trigger("j", T0)
    assert store.clear_triggers() == 2
    assert store.pending_counts() == {}
    assert store.release_claims() == 0
    assert store.claim_trigger("j", T0) is None


# ---------------------------------------------------------------- events

def test_events_newest_first_with_filters(make_store):
    store, other = make_store("one"), make_store("two")
    first = store.add_event(Event(ts=T0, name="job_started", job="a", message="pid 1"))
    second = store.add_event(Event(ts=T0 + 1, name="daemon_started"))
    third = other.add_event(Event(ts=T0 + 2, name="job_failed", job="a"))
    assert first < second < third, "add_event returns the new event's id"
    events = store.recent_events()
    assert [e.id for e in events] == [third, second, first]
    assert [e.name for e in events] == ["job_failed", "daemon_started", "job_started"]
    assert events[2] == Event(ts=T0, name="job_started", job="a", message="pid 1",
                              device="one", id=events[2].id)
    assert events[0].device == "two"
    assert [e.name for e in store.recent_events(job="a")] == ["job_failed", "job_started"]
    assert [e.name for e in store.recent_events(limit=1)] == ["job_failed"]
    assert [e.id for e in store.recent_events(after_id=events[2].id)] == [
        events[0].id, events[1].id]


def test_event_data_round_trips_as_json(store):
    data = {"status": "running", "pid": 7, "nested": {"tags": ["gpu"], "ok": True, "none": None}}
    store.add_event(Event(ts=T0, name="job_started", job="a", data=data))
    store.add_event(Event(ts=T0 + 1, name="plain"))
    store.add_event(Event(ts=T0 + 2, name="odd", data={"pair": (1, 2), 3: "three"}))
    odd, plain_event, started = store.recent_events()
    assert started.data == data and plain_event.data is None
    assert odd.data == {"pair": [1, 2], "3": "three"}   # what JSON makes of them, on every backend


# ---------------------------------------------------------------- home-wide facts

def test_meta_last_write_wins_and_is_shared(make_store):
    one, two = make_store("one"), make_store("two")
    assert one.meta_get("secret") is None
    one.meta_set("secret", "s3cr3t")
    two.meta_set("other", "x")
    assert two.meta_get("secret") == "s3cr3t"
    two.meta_set("secret", "newer")
    assert (one.meta_get("secret"), one.meta_get("other")) == ("newer", "x")


# ---------------------------------------------------------------- housekeeping

def test_prune_deletes_only_old_finished_history(store):
    old_run = store.start_run(run_of("a", T0))
    store.finish_run(_ended(old_run, T0 + 1))
    new_run = store.start_run(run_of("a", T0 + 50))
    store.finish_run(_ended(new_run, T0 + 200))
    still_open = store.start_run(run_of("a", T0 - 500))
    old_trigger = store.add_trigger("j", now=T0)
    store.finish_trigger(old_trigger.id, "ok", T0 + 1)
    new_trigger = store.add_trigger("j", now=T0)
    store.finish_trigger(new_trigger.id, "ok", T0 + 200)
    store.add_trigger("j", now=T0 - 500)
    store.add_event(Event(ts=T0, name="old"))
    store.add_event(Event(ts=T0 + 200, name="new"))
    assert store.prune(before=T0 + 100) == 3
    assert store.recent_runs() == [_ended(new_run, T0 + 200), still_open]
    assert store.pending_counts() == {"j": 1}
    assert [e.name for e in store.recent_events()] == ["new"]
    assert store.prune(before=T0 + 100) == 0


def test_prune_deletes_at_most_limit_rows_of_each_table_per_call(store):
    for i in range(5):
        run = store.start_run(run_of("a", T0 + i))
        store.finish_run(_ended(run, T0 + i))
        store.finish_trigger(store.add_trigger("j", now=T0).id, "ok", T0 + i)
        store.add_event(Event(ts=T0 + i, name="old"))
    store.add_event(Event(ts=T0 + 50, name="new"))
    assert [store.prune(before=T0 + 10, limit=2) for _ in range(4)] == [6, 6, 3, 0]
    assert store.recent_runs() == [] and [e.name for e in store.recent_events()] == ["new"]


def test_check_finds_nothing_wrong_in_a_sound_store(store):
    store.add_trigger("j", now=T0)
    assert store.check() == []


# ---------------------------------------------------------------- transactions

def test_batch_is_atomic_and_invisible_until_done(make_store):
    store, other = make_store("one"), make_store("one")
    with store.batch(durable=True):
        store.save_state(JobState(job="a"))
        store.add_trigger("j", now=T0)
        assert other.load_states() == {} and other.pending_counts() == {}
    assert set(other.load_states()) == {"a"} and other.pending_counts() == {"j": 1}


def test_batch_nests_and_a_failure_rolls_back_everything(store):
    with pytest.raises(RuntimeError):
        with store.batch(durable=True):
            store.save_state(JobState(job="a"))
            with store.batch():
                store.add_trigger("j", now=T0)
            raise RuntimeError("boom")
    assert store.load_states() == {} and store.pending_counts() == {}
    with store.batch():
        with store.batch():
            store.save_state(JobState(job="b"))
        store.save_state(JobState(job="c"))
    assert set(store.load_states()) == {"b", "c"}


@pytest.mark.parametrize("acknowledge", [
    lambda s: s.add_trigger("j", now=T0), lambda s: s.drop_triggers("j", None, T0),
    lambda s: s.meta_set("k", "v"), lambda s: s.batch(durable=True).__enter__()])
def test_an_acknowledgement_in_a_plain_batch_is_refused_and_nothing_is_written(store, acknowledge):
    with pytest.raises(ValueError, match=r"inside a plain batch\(\): .* batch\(durable=True\)"):
        with store.batch():
            store.save_state(JobState(job="a"))
            acknowledge(store)
    assert store.load_states() == {} and store.pending_counts() == {} and store.meta_get("k") is None
    with store.batch(durable=True):                # the store is usable afterwards
        store.add_trigger("j", now=T0)
        store.meta_set("k", "v")
    assert store.pending_counts() == {"j": 1} and store.meta_get("k") == "v"


def test_changed_sees_only_other_connections_commits(make_store):
    store, other = make_store("one"), make_store("one")
    assert store.changed() is False
    store.save_state(JobState(job="a"))
    assert store.changed() is False
    other.save_state(JobState(job="b"))
    assert store.changed() is True
    assert store.changed() is False


@pytest.mark.parametrize("backend", [sqlite_backend, memory_backend], ids=["sqlite", "memory"])
def test_a_write_during_another_stores_batch_fails_after_a_wait_not_a_hang(backend, tmp_path):
    """One writer at a time, as on one SQLite file (PostgreSQL locks rows, not the database)."""
    store, other = backend(tmp_path, "one"), backend(tmp_path, "one")
    with store.batch():
        store.save_state(JobState(job="a"))
        with pytest.raises(StoreError, match="saving state of 'b' failed: database is locked"):
            other.save_state(JobState(job="b"))
        assert other.load_states() == {}
    other.save_state(JobState(job="b"))
    assert set(store.load_states()) == {"a", "b"}


def test_closed_store_raises_store_error(store):
    store.close()
    with pytest.raises(StoreError):
        store.load_states()


# ---------------------------------------------------------------- property

OPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.sampled_from("ab")),
    st.tuples(st.just("claim"), st.sampled_from("ab"), st.integers(0, 1)),
    st.tuples(st.just("finish"), st.integers(0, 50)),
), max_size=40)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_any_sequence_keeps_fifo_and_exactly_once(backend, ops):
    with tempfile.TemporaryDirectory() as folder:
        stores = [backend(Path(folder), "one"), backend(Path(folder), "two")]
        try:
            _check_queue_model(stores, ops)
        finally:
            for store in stores:
                store.close()


def _check_queue_model(stores, ops):
    queued, claimed, finished = {"a": [], "b": []}, [], set()
    for step, op in enumerate(ops):
        now = T0 + step
        if op[0] == "add":
            queued[op[1]].append(stores[0].add_trigger(op[1], [step], now=now).id)
        elif op[0] == "claim":
            trigger = stores[op[2]].claim_trigger(op[1], now)
            expected = queued[op[1]].pop(0) if queued[op[1]] else None
            assert (trigger and trigger.id) == expected
            claimed += [expected] if expected else []
        elif claimed:
            trigger_id = claimed[op[1] % len(claimed)]
            assert stores[0].finish_trigger(trigger_id, "ok", now) is (trigger_id not in finished)
            finished.add(trigger_id)
    assert stores[1].pending_counts() == {job: len(ids) for job, ids in queued.items() if ids}


# ================================================================ memory only

def test_memory_urls_name_a_database_of_this_process():
    one, two, alone = open_store("memory:home", "one"), open_store("memory:home", "two"), open_store("memory:", "x")
    assert isinstance(one, MemoryStore)
    one.add_trigger("j", now=T0)
    assert two.pending_counts() == {"j": 1} and alone.pending_counts() == {}
    for store in (one, two, alone):
        store.close()
    again = open_store("memory:home", "one")   # every store of it closed: a new database
    assert again.pending_counts() == {}
    again.close()


def test_memory_stores_made_apart_share_nothing():
    one, two = MemoryStore("one"), MemoryStore("one")
    one.add_trigger("j", now=T0)
    assert two.pending_counts() == {} and two.changed() is False
    shared = MemoryDatabase()
    three, four = MemoryStore("one", shared), MemoryStore("two", shared)
    three.add_trigger("j", now=T0)
    assert four.pending_counts() == {"j": 1} and four.changed() is True


# ================================================================ SQLite only

@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "state.db")


@pytest.fixture
def sqlite_store(db_path):
    store = SqliteStore(db_path, "dev1")
    yield store
    store.close()


def raw(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def query(path: str, sql: str, params=()) -> list:
    """Run one statement on a connection of its own, as another program would."""
    db = raw(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def trigger_row(path: str, trigger_id: int) -> dict:
    db = raw(path)
    db.row_factory = sqlite3.Row
    row = dict(db.execute("SELECT * FROM triggers WHERE id = ?", (trigger_id,)).fetchone())
    db.close()
    return row


def insert(path: str, **values) -> int:
    db = raw(path)
    names = ", ".join(values)
    marks = ", ".join("?" * len(values))
    trigger_id = db.execute(f"INSERT INTO triggers ({names}) VALUES ({marks})",
                            tuple(values.values())).lastrowid
    db.close()
    return trigger_id


def test_open_store_accepts_paths_and_sqlite_urls(tmp_path):
    for url in (str(tmp_path / "a.db"), f"sqlite:///{tmp_path / 'b.db'}"):
        store = open_store(url, "dev1")
        assert isinstance(store, SqliteStore)
        store.close()
    assert (tmp_path / "b.db").exists()


def test_external_insert_of_just_a_job_name(sqlite_store, db_path):
    now = query(db_path, "SELECT CAST(strftime('%s', 'now') AS REAL)")[0][0]
    trigger_id = insert(db_path, job="ext")
    assert sqlite_store.pending_counts() == {"ext": 1}
    trigger = sqlite_store.claim_trigger("ext", T0)
    assert (trigger.id, trigger.args, trigger.kwargs) == (trigger_id, (), {})
    assert abs(trigger.created - now) < 120   # CURRENT_TIMESTAMP text, read as UTC


@pytest.mark.parametrize("created, expected", [
    ("2024-03-01 12:00:00", timegm((2024, 3, 1, 12, 0, 0))),
    (T0 + 0.5, T0 + 0.5),
    (int(T0), T0),
    (None, 0.0),
])
def test_external_created_forms(sqlite_store, db_path, created, expected):
    insert(db_path, job="ext", created=created)
    assert sqlite_store.claim_trigger("ext", T0).created == expected


SHELLY = """rm -rf "$HOME"; echo 'two  spaces' | cat > /tmp/x && ls * $(id) `id`"""


@pytest.mark.parametrize("args, expected", [
    ('["a", 1, {"b": null}]', ("a", 1, {"b": None})),
    ('"solo"', ("solo",)),
    ("42", (42,)),
    ("null", ()),
    (None, ()),
    ("", ()),
    ("plain words", ("plain words",)),
    (SHELLY, (SHELLY,)),
])
def test_external_args_forms(sqlite_store, db_path, args, expected):
    insert(db_path, job="ext", args=args)
    assert sqlite_store.claim_trigger("ext", T0).args == expected


@pytest.mark.parametrize("kwargs, expected", [
    ('{"model": "small", "n": 2}', {"model": "small", "n": 2}),
    (None, {}),
    ("", {}),
    ("null", {}),
])
def test_external_kwargs_forms(sqlite_store, db_path, kwargs, expected):
    insert(db_path, job="ext", kwargs=kwargs)
    assert sqlite_store.claim_trigger("ext", T0).kwargs == expected


@pytest.mark.parametrize("bad", ["[1, 2]", '"text"', "5", "not json {"])
def test_kwargs_not_an_object_are_claimed_as_none_for_the_engine_to_reject(sqlite_store, db_path, bad):
    rejected = insert(db_path, job="ext", args='["x"]', kwargs=bad)
    good = insert(db_path, job="ext", args='["y"]', kwargs='{"ok": true}')
    trigger = sqlite_store.claim_trigger("ext", T0)
    assert (trigger.id, trigger.args, trigger.kwargs) == (rejected, ("x",), None)
    sqlite_store.finish_trigger(rejected, "rejected: kwargs is not a JSON object", T0)
    trigger = sqlite_store.claim_trigger("ext", T0)
    assert (trigger.id, trigger.args, trigger.kwargs) == (good, ("y",), {"ok": True})
    row = trigger_row(db_path, rejected)
    assert (row["done"], row["outcome"]) == (1, "rejected: kwargs is not a JSON object")


def test_trigger_rows_record_claim_and_finish(sqlite_store, db_path):
    sqlite_store.add_trigger("j", [1], now=T0)
    claimed = sqlite_store.claim_trigger("j", T0 + 1)
    row = trigger_row(db_path, claimed.id)
    assert (row["claimed"], row["device"], row["done"]) == (T0 + 1, "dev1", 0)
    run = sqlite_store.start_run(run_of("j", T0 + 2, trigger_id=claimed.id))
    sqlite_store.finish_run(_ended(run, T0 + 3, Outcome.TIMEOUT), finish_trigger=True)
    sqlite_store.finish_run(_ended(run, T0 + 4, Outcome.FAILED), finish_trigger=True)
    row = trigger_row(db_path, claimed.id)
    assert (row["done"], row["outcome"], row["finished"], row["run_id"]) == (
        1, "timeout", T0 + 3, run.id)


def test_two_processes_racing_claim_each_trigger_once(sqlite_store, db_path):
    ids = {sqlite_store.add_trigger("race", [i], now=T0).id for i in range(200)}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, db_path, f"proc{n}"], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for n in range(2)]
    assert [proc.stdout.readline() for proc in procs] == ["ready\n"] * len(procs)
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    claimed = [trigger_id for got in results for trigger_id in got]
    assert sorted(claimed) == sorted(ids)
    devices = {trigger_row(db_path, i)["device"] for i in results[0]}
    assert devices <= {"proc0"}


CLAIMER = """
import json, sys
from aios.store import StoreError
from aios.store.sqlite import SqliteStore
store = SqliteStore(sys.argv[1], sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
got = []
while True:
    try:
        trigger = store.claim_trigger("race", 1.0)
    except StoreError:
        continue   # the other process holds the lock: try again, as the daemon does
    if trigger is None:
        break
    got.append(trigger.id)
print(json.dumps(got))
"""


def test_a_locked_database_gives_store_error_not_a_hang(sqlite_store, db_path):
    locker = raw(db_path)
    locker.execute("BEGIN EXCLUSIVE")
    outcome = {}

    def write():
        try:
            sqlite_store.save_state(JobState(job="backup"))
        except Exception as exc:   # noqa: BLE001 - the test inspects it
            outcome["error"] = exc

    worker = threading.Thread(target=write)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive()
    error = outcome.get("error")
    assert isinstance(error, StoreError) and not isinstance(error, sqlite3.Error)
    assert str(error) == "saving state of 'backup' failed: database is locked"
    assert sqlite_store.load_states() == {}   # reads still work under WAL
    locker.execute("ROLLBACK")
    locker.close()
    sqlite_store.save_state(JobState(job="backup"))
    assert set(sqlite_store.load_states()) == {"backup"}


def test_acknowledgements_commit_with_synchronous_full_and_nothing_else_does(sqlite_store):
    """Power loss cannot be staged in a test; what is checked is SQLite's own promise:
    a transaction committed with synchronous = FULL has its WAL synced before COMMIT returns."""
    seen = []
    sqlite_store._db.set_trace_callback(seen.append)
    sqlite_store.add_trigger("j", now=T0)
    assert seen[0] == "PRAGMA synchronous = FULL" and seen[-2:] == ["COMMIT", "PRAGMA synchronous = NORMAL"]
    for acknowledge in (lambda: sqlite_store.drop_triggers("j", None, T0), lambda: sqlite_store.meta_set("k", "v")):
        seen.clear()
        acknowledge()
        assert (seen[0], seen[-1]) == ("PRAGMA synchronous = FULL", "PRAGMA synchronous = NORMAL")
    seen.clear()
    with sqlite_store.batch(durable=True):
        for i in range(3):
            sqlite_store.add_trigger("j", [i], now=T0)
    assert [q for q in seen if "synchronous" in q] == ["PRAGMA synchronous = FULL", "PRAGMA synchronous = NORMAL"]
    seen.clear()
    sqlite_store.save_state(JobState(job="a"))
    sqlite_store.claim_trigger("j", T0)
    with sqlite_store.batch():
        sqlite_store.add_event(Event(ts=T0, name="x"))
    assert not [q for q in seen if "synchronous" in q]
    assert query(sqlite_store.path, "PRAGMA journal_mode") == [("wal",)]


def test_text_sqlite_cannot_store_is_a_store_error_and_nul_bytes_round_trip(sqlite_store):
    with pytest.raises(StoreError, match="setting 'k' in the meta table failed: .*surrogates not allowed"):
        sqlite_store.meta_set("k", "\udc80")
    poisoned = "j\udc80"
    with pytest.raises(StoreError, match=re.escape(f"adding a trigger of {poisoned!r} failed: ")):
        sqlite_store.add_trigger(poisoned, now=T0)
    assert sqlite_store.pending_counts() == {} and sqlite_store.meta_get("k") is None
    sqlite_store.meta_set("k\0z", "a\0b")
    assert sqlite_store.meta_get("k\0z") == "a\0b"


def test_a_failed_claim_rolls_back(sqlite_store, db_path):
    trigger = sqlite_store.add_trigger("j", now=T0)
    locker = raw(db_path)
    locker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="claiming a trigger of 'j' failed"):
        sqlite_store.claim_trigger("j", T0)
    locker.execute("ROLLBACK")
    locker.close()
    assert sqlite_store.claim_trigger("j", T0).id == trigger.id


def test_changed_sees_a_raw_connections_commit(sqlite_store, db_path):
    assert sqlite_store.changed() is False
    insert(db_path, job="ext")
    assert sqlite_store.changed() is True
    assert sqlite_store.changed() is False


def _tables(path: str) -> set:
    return {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}


def _user_version(path: str) -> int:
    return query(path, "PRAGMA user_version")[0][0]


def test_a_new_database_gets_the_current_schema(sqlite_store, db_path):
    assert _user_version(db_path) == SCHEMA_VERSION == 3
    assert set(TABLES) <= _tables(db_path)


def test_migrates_a_v1_database_in_place_keeping_every_row(db_path):
    db = raw(db_path)
    db.executescript((Path(__file__).parent / "data" / "store_v1.sql").read_text())
    db.close()
    assert _user_version(db_path) == 1
    store = SqliteStore(db_path, "dev1")
    assert _user_version(db_path) == SCHEMA_VERSION
    assert set(TABLES) <= _tables(db_path)
    states = store.load_states()
    assert (states["web"].pid, states["web"].restarts, states["web"].enabled) == (4242, 2, True)
    assert (states["web"].slot_boot, states["web"].boot_id) == (None, None) and states["llm"].held
    assert store.load_specs()["web"] == {"type": "always", "command": ["sleep", "9"]}
    assert [r.id for r in store.open_runs()] == [1] and store.get_run(2).outcome is Outcome.OK
    assert [(t.id, t.args) for t in store.pending_triggers()] == [(2, ("b",))]
    assert store.get_trigger(1).outcome == "ok"
    assert [(e.name, e.data) for e in store.recent_events()] == [("job_exited", None), ("daemon_started", None)]
    assert store.add_trigger("llm", now=T0).id == 3 and store.add_event(Event(ts=T0, name="x")) == 3
    store.save_state(replace(states["web"], slot_boot=5.5, boot_id="b"))
    assert store.load_states()["web"].slot_boot == 5.5
    store.meta_set("k", "v")
    assert store.meta_get("k") == "v" and store.check() == []
    store.close()


def test_a_failed_migration_leaves_the_database_as_it_was(db_path):
    db = raw(db_path)
    db.executescript((Path(__file__).parent / "data" / "store_v1.sql").read_text())
    db.execute("ALTER TABLE events ADD COLUMN data BLOB")   # what v2 would add: its ALTER fails
    db.close()
    with pytest.raises(StoreError, match="migrating .* to schema version 2 failed: duplicate column"):
        SqliteStore(db_path, "dev1")
    assert _user_version(db_path) == 1
    assert "meta" not in _tables(db_path)
    assert [r[1] for r in query(db_path, "PRAGMA table_info(job_state)")][-1] == "held"


@pytest.mark.parametrize("sql, index", [
    (_PRUNE[0], "runs_ended"), (_PRUNE[1], "triggers_finished"), (_PRUNE[2], "events_ts"),
    (f"{_PENDING_TRIGGERS} ORDER BY id LIMIT :limit", "triggers_queue"),
    (f"{_PENDING_TRIGGERS} AND job = :job ORDER BY id LIMIT :limit", "triggers_queue"),
])
def test_prune_and_queue_listing_walk_an_index_never_the_table(sqlite_store, sql, index):
    plan = [row[3] for row in sqlite_store._db.execute(
        f"EXPLAIN QUERY PLAN {sql}", {"before": T0, "limit": 10, "job": "j"})]
    assert any(f"INDEX {index}" in step for step in plan), plan
    assert not any(step.startswith("SCAN") and "INDEX" not in step for step in plan), plan


def test_migrates_an_empty_v0_database(db_path):
    db = raw(db_path)   # what `sqlite3 FILE` leaves: a valid database without tables
    db.executescript("CREATE TABLE scratch (x); DROP TABLE scratch;")
    db.close()
    store = SqliteStore(db_path, "dev1")
    assert _user_version(db_path) == SCHEMA_VERSION
    store.add_trigger("j", now=T0)
    assert store.claim_trigger("j", T0) is not None
    store.close()


def test_migrates_an_original_triggers_table_keeping_its_rows(db_path):
    db = raw(db_path)
    db.execute("CREATE TABLE triggers (id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, "
               "args TEXT, kwargs TEXT, created TIMESTAMP DEFAULT CURRENT_TIMESTAMP, "
               "done INTEGER DEFAULT 0)")
    db.execute("INSERT INTO triggers (job, args, kwargs, done) VALUES ('old', '[1]', '{}', 1)")
    db.execute("INSERT INTO triggers (job, args, kwargs) VALUES ('llm', '[\"a\"]', '{\"m\": 1}')")
    db.execute("INSERT INTO triggers (job, args) VALUES ('llm', 'raw text')")
    db.execute("INSERT INTO triggers (job, done) VALUES ('llm', NULL)")
    db.close()
    store = SqliteStore(db_path, "dev1")
    assert _user_version(db_path) == SCHEMA_VERSION
    old = trigger_row(db_path, 1)
    assert (old["job"], old["args"], old["done"]) == ("old", "[1]", 1)
    assert {"claimed", "device", "outcome", "finished", "run_id"} <= set(old)
    assert store.pending_counts() == {"llm": 3}
    first, second, third = (store.claim_trigger("llm", T0) for _ in range(3))
    assert (first.id, first.args, first.kwargs) == (2, ("a",), {"m": 1})
    assert (second.id, second.args, second.kwargs) == (3, ("raw text",), {})
    assert (third.id, third.args, third.kwargs) == (4, (), {})
    assert store.add_trigger("llm", now=T0).id == 5
    insert(db_path, job="llm")
    assert store.pending_counts() == {"llm": 2}
    store.close()


def test_a_newer_schema_is_refused(db_path):
    query(db_path, "PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="upgrade AIOS"):
        SqliteStore(db_path, "dev1")


def test_reopening_a_current_database_writes_nothing(sqlite_store, db_path):
    sqlite_store.add_trigger("j", now=T0)
    watcher = raw(db_path)
    before = watcher.execute("PRAGMA data_version").fetchone()[0]
    SqliteStore(db_path, "dev2").close()
    assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
    watcher.close()


def test_files_are_private_whatever_the_umask(tmp_path):
    path = tmp_path / "new" / "home" / "state.db"
    old = os.umask(0)
    try:
        store = SqliteStore(str(path), "dev1")
        store.add_trigger("j", now=T0)
        files = [p for p in path.parent.iterdir() if p.name.startswith("state.db")]
        assert len(files) >= 2   # the database and its -wal (and -shm) files
        for file in files:
            assert file.stat().st_mode & 0o777 in (0o600, 0o640), file
        assert path.parent.stat().st_mode & 0o002 == 0
        store.close()
    finally:
        os.umask(old)


def test_unopenable_path_gives_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="creating state database .* failed: "):
        SqliteStore(str(blocker / "state.db"), "dev1")


# ---------------------------------------------------------------- helpers

def _ended(run: Run, ended: float, outcome: Outcome = Outcome.OK) -> Run:
    return replace(run, ended=ended, exit_code=0 if outcome is Outcome.OK else 1, outcome=outcome)


def test_a_trigger_with_a_target_is_claimed_and_counted_only_by_that_device(make_store):
    one, two = make_store("one"), make_store("two")
    one.add_trigger("j", ["for two"], now=T0, target="two")
    one.add_trigger("j", ["for anyone"], now=T0 + 1)
    assert one.pending_counts() == {"j": 1} and two.pending_counts() == {"j": 2}
    first = one.claim_trigger("j", T0 + 2)
    assert first.args == ("for anyone",) and one.claim_trigger("j", T0 + 3) is None
    mine = two.claim_trigger("j", T0 + 4)
    assert (mine.args, mine.target, mine.device) == (("for two",), "two", "two")
    assert two.get_trigger(mine.id).target == "two"
