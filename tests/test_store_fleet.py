"""The fleet's store verbs (devices, published jobs, leases, slots, routed commands), on
PostgreSQL; SQLite refuses them with FleetError. Expiry is decided by the database's
clock: tests wait for the event that must come first (another device acquiring), never
for a fixed time.
"""
from __future__ import annotations

import threading
import time

import pytest

from aios.spec import Run, replace
from aios.store import FleetError
from aios.store.sqlite import SqliteStore
from tests import pg

pg.need_psycopg()
from aios.store.postgres import PostgresStore  # noqa: E402

T0 = 1_700_000_000.0
LIVENESS = 30.0


@pytest.fixture
def fleet(pg_url):
    """Stores of several devices on one database."""
    stores = {}

    def device(name: str) -> PostgresStore:
        if name not in stores:
            stores[name] = PostgresStore(pg_url, name)
        return stores[name]

    yield device
    for store in stores.values():
        store.close()


def eventually(attempt, what: str):
    """Call `attempt` until it returns something truthy (expiry on the database clock)."""
    deadline = time.monotonic() + LIVENESS
    while time.monotonic() < deadline:
        if result := attempt():
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def run_threads(count: int, target) -> list:
    results, start = [None] * count, threading.Barrier(count)

    def run(n: int) -> None:
        start.wait()
        results[n] = target(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIVENESS)
    return results


# ---------------------------------------------------------------- devices

def test_heartbeats_list_devices_with_what_they_run(fleet):
    a, b = fleet("a"), fleet("b")
    a.heartbeat("a", {"gpu", "lab"}, "0.9.0", 0.5)
    b.heartbeat("b", [], "0.9.1", 2.0)
    a.start_run(Run(job="train", started=T0))
    a.start_run(Run(job="web", started=T0))
    b.finish_run(replace(b.start_run(Run(job="old", started=T0)), ended=T0 + 1))   # ended: not running
    devices = a.devices()
    assert [(d.id, d.tags, d.version, d.load, d.running) for d in devices] == [
        ("a", ("gpu", "lab"), "0.9.0", 0.5, ("train", "web")), ("b", (), "0.9.1", 2.0, ())]
    assert all(d.heartbeat > 1e9 and 0 <= d.age < LIVENESS for d in devices)


def test_a_heartbeat_updates_the_row(fleet):
    a = fleet("a")
    a.heartbeat("a", ["gpu"], "1", 1.0)
    first = a.devices()[0]
    a.heartbeat("a", [], "2", 0.0)
    second = a.devices()[0]
    assert (second.tags, second.version, second.load) == ((), "2", 0.0)
    assert second.heartbeat >= first.heartbeat


# ---------------------------------------------------------------- published jobs

def test_each_device_saves_and_loads_its_own_job_tables(fleet):
    fleet("a").save_specs({"web": {"type": "always"}, "db": {"type": "always"}})
    fleet("b").save_specs({"ping": {"type": "idle"}})
    fleet("a").save_specs({"db": {"type": "always"}, "web": {"type": "always", "env": {"X": "1"}}})
    assert list(fleet("a").load_specs().items()) == [("db", {"type": "always"}),
                                                     ("web", {"type": "always", "env": {"X": "1"}})]
    assert fleet("b").load_specs() == {"ping": {"type": "idle"}}, "another device's save replaced b's"


def test_the_claims_of_a_silent_device_go_back_to_the_queue_and_no_others(fleet):
    for device in ("dead", "alive"):
        fleet(device).heartbeat(device, [], "1", 0.0)
        fleet(device).add_trigger("work", now=T0)
        assert fleet(device).claim_trigger("work", T0) is not None
    fleet("dead").add_trigger("work", now=T0, target="dead")
    assert fleet("dead").claim_trigger("work", T0).target == "dead"
    assert {d.id: d.claimed for d in fleet("alive").devices()} == {"alive": 1, "dead": 2}
    assert fleet("alive").reclaim_triggers("dead", 3600.0) == 0, "its heartbeat is recent"
    eventually(lambda: fleet("alive").reclaim_triggers("dead", 0.05), "the dead device's claims reclaimed")
    assert {d.id: d.claimed for d in fleet("alive").devices()} == {"alive": 1, "dead": 0}
    assert fleet("alive").claim_trigger("work", T0) is not None, "a reclaimed trigger is claimed again"
    assert fleet("alive").claim_trigger("work", T0) is None, "one aimed at the dead device waits for it"
    assert fleet("dead").claim_trigger("work", T0).target == "dead"


def test_published_jobs_are_versioned_and_keep_their_order(fleet):
    a, b = fleet("a"), fleet("b")
    assert b.fleet_jobs() == (0, {})
    tables = {"web": {"type": "always", "command": ["serve"], "scope": "fleet"},
              "backup": {"type": "daily", "time": "03:00"}}
    first = a.publish_jobs(tables, by_device="a")
    version, seen = b.fleet_jobs()
    assert version == first and seen == tables and list(seen) == ["web", "backup"]
    assert list(seen["web"]) == ["type", "command", "scope"]
    assert a.publish_jobs(tables, by_device="b") == first    # unchanged: no new version
    second = b.publish_jobs({"backup": tables["backup"]}, by_device="b")
    assert second > first and a.fleet_jobs() == (second, {"backup": tables["backup"]})


def test_concurrent_publications_each_get_a_version(fleet):
    stores = [fleet(f"d{n}") for n in range(4)]
    versions = run_threads(4, lambda n: stores[n].publish_jobs({f"job{n}": {"type": "trigger"}}, f"d{n}"))
    assert len(set(versions)) == 4
    assert stores[0].fleet_jobs()[0] == max(versions)


# ---------------------------------------------------------------- leases

def test_a_lease_is_held_by_one_device_until_it_expires(fleet):
    a, b = fleet("a"), fleet("b")
    lease = a.acquire_lease("web", "a", ttl=60)
    assert (lease.job, lease.device, lease.epoch, lease.ttl) == ("web", "a", 1, 60.0)
    assert b.acquire_lease("web", "b", ttl=60) is None
    assert a.acquire_lease("web", "a", ttl=60) is None     # held: renew it instead
    renewed = a.renew_lease("web", "a", 1, ttl=60)
    assert renewed.epoch == 1 and renewed.expires >= lease.expires
    assert b.renew_lease("web", "b", 1, ttl=60) is None
    assert a.renew_lease("web", "a", 2, ttl=60) is None
    assert [(l.job, l.device, l.epoch) for l in b.leases()] == [("web", "a", 1)]


def test_an_expired_lease_moves_with_a_larger_epoch_and_the_old_holder_cannot_renew(fleet):
    a, b = fleet("a"), fleet("b")
    old = a.acquire_lease("web", "a", ttl=0.2)
    new = eventually(lambda: b.acquire_lease("web", "b", ttl=60), "the lease to expire")
    assert (new.device, new.epoch) == ("b", old.epoch + 1) and new.expires > old.expires
    assert a.renew_lease("web", "a", old.epoch, ttl=60) is None
    assert a.release_lease("web", "a", old.epoch) is False
    assert [(l.device, l.epoch) for l in a.leases()] == [("b", 2)]


def test_a_lease_that_expired_unclaimed_cannot_be_renewed(fleet):
    a = fleet("a")
    old = a.acquire_lease("web", "a", ttl=0.2)
    again = eventually(lambda: a.acquire_lease("web", "a", ttl=60), "the lease to expire")
    assert again.epoch == old.epoch + 1
    assert a.renew_lease("web", "a", old.epoch, ttl=60) is None


def test_release_frees_the_lease_at_once_and_keeps_the_epoch_growing(fleet):
    a, b = fleet("a"), fleet("b")
    lease = a.acquire_lease("web", "a", ttl=60)
    assert a.release_lease("web", "a", lease.epoch) is True
    assert a.leases() == []
    taken = b.acquire_lease("web", "b", ttl=60)
    assert taken.epoch == lease.epoch + 1
    assert a.release_lease("web", "a", lease.epoch) is False


def test_many_devices_racing_for_a_lease_one_wins_each_epoch(fleet):
    stores = [fleet(f"d{n}") for n in range(4)]
    for round_ in range(10):
        won = run_threads(4, lambda n: stores[n].acquire_lease("job", f"d{n}", ttl=60))
        holders = [lease for lease in won if lease is not None]
        assert len(holders) == 1 and holders[0].epoch == round_ + 1
        assert stores[0].release_lease("job", holders[0].device, holders[0].epoch)


def test_bad_ttl_is_refused(fleet):
    with pytest.raises(ValueError, match="lease ttl 0"):
        fleet("a").acquire_lease("web", "a", ttl=0)


# ---------------------------------------------------------------- slots

def test_a_slot_is_claimed_once_fleet_wide(fleet):
    a, b = fleet("a"), fleet("b")
    assert a.claim_slot("backup", "1700000000.0", "a") is True
    assert b.claim_slot("backup", "1700000000.0", "b") is False
    assert a.claim_slot("backup", "1700000000.0", "a") is True    # the same device again
    assert b.claim_slot("backup", "1700086400.0", "b") is True
    assert b.claim_slot("other", "1700000000.0", "b") is True


def test_devices_racing_for_a_slot_one_wins(fleet):
    stores = [fleet(f"d{n}") for n in range(4)]
    for slot in range(10):
        won = run_threads(4, lambda n: stores[n].claim_slot("daily", str(slot), f"d{n}"))
        assert won.count(True) == 1


# ---------------------------------------------------------------- commands

def test_commands_go_to_their_device_once_with_an_outcome(fleet):
    a, b = fleet("a"), fleet("b")
    first = a.send_command("b", "restart", {"job": "web"})
    second = a.send_command("b", "trigger", {"job": "llm", "args": ["x"], "kwargs": {"m": 1}})
    a.send_command("c", "stop", {"job": "web"})
    taken = b.take_commands("b")
    assert [(c.id, c.op, c.fields, c.sender, c.device) for c in taken] == [
        (first, "restart", {"job": "web"}, "a", "b"),
        (second, "trigger", {"job": "llm", "args": ["x"], "kwargs": {"m": 1}}, "a", "b")]
    assert all(c.taken is not None and c.outcome is None for c in taken)
    assert b.take_commands("b") == []
    assert b.finish_command(first, "ok") is True
    assert b.finish_command(first, "again") is False
    assert a.get_command(first).outcome == "ok" and a.get_command(second).outcome is None
    assert a.get_command(999_999) is None
    assert b.finish_command(a.send_command("b", "stop", {}), "not taken") is False


def test_two_daemons_of_one_device_take_each_command_once(fleet):
    a = fleet("a")
    ids = [a.send_command("b", "trigger", {"n": n}) for n in range(200)]
    takers = [fleet("b1"), fleet("b2")]

    def take_all(n: int) -> list:
        got = []
        while commands := takers[n].take_commands("b", limit=7):
            got += [c.id for c in commands]
        return got

    results = run_threads(2, take_all)
    assert sorted(results[0] + results[1]) == ids


# ---------------------------------------------------------------- SQLite

@pytest.mark.parametrize("verb, args", [
    ("heartbeat", ("d", [], "1", 0.0)), ("devices", ()), ("publish_jobs", ({}, "d")),
    ("fleet_jobs", ()), ("acquire_lease", ("j", "d", 10)), ("renew_lease", ("j", "d", 1, 10)),
    ("release_lease", ("j", "d", 1)), ("leases", ()), ("claim_slot", ("j", "s", "d")),
    ("send_command", ("d", "stop", {})), ("take_commands", ("d",)), ("finish_command", (1, "ok")),
    ("get_command", (1,)), ("reclaim_triggers", ("d", 30.0))])
def test_sqlite_refuses_fleet_verbs_naming_the_fix(tmp_path, verb, args):
    store = SqliteStore(str(tmp_path / "state.db"), "d")
    try:
        assert store.fleet is False
        with pytest.raises(FleetError, match=r"^Fleet mode needs PostgreSQL: set \[store\] url"):
            getattr(store, verb)(*args)
    finally:
        store.close()
