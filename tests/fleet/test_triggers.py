"""Triggers in a fleet: each acknowledged trigger runs exactly once, whichever device
takes it, also across a PostgreSQL restart in the middle of a burst."""
from __future__ import annotations

import os
import tempfile
import threading
import warnings

import pytest

from aios import control

from .conftest import Fleet, wait_until

WORK = """
    [jobs.work]
    type = "trigger"
    command = ["true"]
    max_parallel = 4
"""


def send(home, count: int, acked: list, refused: list) -> None:
    """`count` triggers, each sent again after a refusal (as a client should) until it is
    acknowledged; the acknowledged ids in `acked`, every refusal in `refused`."""
    import time

    while count:
        try:
            with control.Client(home) as client:
                acked.append(client.call("trigger", job="work"))
            count -= 1
        except control.AiosError as exc:
            refused.append(str(exc))
            time.sleep(0.05)


def runs_per_trigger(url: str) -> dict[int, list]:
    import psycopg

    with psycopg.connect(url.split("?")[0] + "?" + url.split("?")[1]) as db:
        rows = db.execute("SELECT trigger_id, outcome FROM runs WHERE job = 'work'").fetchall()
    found: dict[int, list] = {}
    for trigger_id, outcome in rows:
        found.setdefault(trigger_id, []).append(outcome)
    return found


def check_exactly_once(url: str, acked: list) -> None:
    done = wait_until(lambda: (r := runs_per_trigger(url)) and all(
        "ok" in r.get(t, []) for t in acked) and r, timeout=240, what="every acknowledged trigger run")
    twice = {t: o for t, o in done.items() if o.count("ok") > 1}
    assert not twice, f"triggers run more than once: {dict(list(twice.items())[:5])}"
    missing = [t for t in acked if "ok" not in done.get(t, [])]
    assert not missing


@pytest.mark.chaos
def test_ten_thousand_triggers_from_several_clients_on_several_devices_run_once_each(fleet):
    fleet.publish(WORK)
    devices = [fleet.device(name) for name in ("a", "b", "c")]
    acked, refused = [], []
    clients = [threading.Thread(target=send, args=(d.home, 10_000 // 6, acked, refused))
               for d in devices for _ in range(2)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    assert not refused and len(acked) == 6 * (10_000 // 6)
    check_exactly_once(fleet.url, acked)
    with_devices = {d for d in _devices_that_ran(fleet.url)}
    assert len(with_devices) == 3, f"only {with_devices} took triggers"


def _devices_that_ran(url: str) -> set:
    import psycopg

    with psycopg.connect(url) as db:
        return {row[0] for row in db.execute("SELECT DISTINCT device FROM runs WHERE job = 'work'")}


@pytest.fixture
def own_server():
    """A PostgreSQL of this test's own, to restart."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tempfile.mkdtemp(prefix="aios-test-pg-restart-"), cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.mark.chaos
def test_a_postgresql_restart_during_a_burst_loses_no_acknowledged_trigger_and_doubles_no_run(own_server, tmp_path):
    import pgserver

    fleet = Fleet(tmp_path, own_server.get_uri())
    fleet.publish(WORK)
    try:
        devices = [fleet.device(name) for name in ("a", "b")]
        acked, refused = [], []
        clients = [threading.Thread(target=send, args=(d.home, 400, acked, refused)) for d in devices]
        for thread in clients:
            thread.start()
        wait_until(lambda: len(acked) > 100, what="the burst under way")
        pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=own_server.pgdata, user=own_server.system_user)
        for thread in clients:
            thread.join()
        assert len(acked) == 800 and refused, "the restart was seen, and every trigger got through"
        for line in refused:   # refused, never acknowledged and lost
            assert "failed" in line or "failing" in line, line
        check_exactly_once(fleet.url, acked)
        assert all(d.proc.poll() is None for d in devices), "the daemons outlive the database's restart"
    finally:
        for daemon in fleet.daemons.values():
            if daemon.proc.poll() is None:
                daemon.kill()


@pytest.mark.chaos
def test_a_trigger_claimed_by_a_device_that_died_runs_on_another(fleet):
    from .conftest import TTL, processes_under

    fleet.publish("""
        [jobs.work]
        type = "trigger"
        command = ["sleep", "1000"]
    """)
    first = fleet.device("a")
    trigger = control.call(first.home, "trigger", job="work")
    wait_until(lambda: trigger in runs_per_trigger(fleet.url), what="the run on a")
    first.kill()                                     # kill -9: the daemon, then what it left running
    for pid in processes_under(first.home):
        os.killpg(pid, 9)
    fleet.device("b")
    outcomes = wait_until(lambda: len(r := runs_per_trigger(fleet.url).get(trigger, [])) == 2 and r,
                          timeout=60 + 10 * TTL, what="the trigger run again by b")
    assert outcomes[0] is None, "a's run stays open (its end was never recorded)"
    assert _devices_that_ran(fleet.url) == {"a", "b"}
