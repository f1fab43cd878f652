"""A device cut off from the database (a TCP proxy that the test pauses or drops): it
keeps running its device-scope jobs from its last known configuration, stops its copy
of a fleet job before its lease can expire, and rejoins without a second copy."""
from __future__ import annotations

import time

import pytest

from aios import control
from tests import pg

from .conftest import TTL, Sampler, copies, wait_until
from .proxy import Proxy

JOBS = """
    [jobs.solo]
    type = "always"
    command = ["sleep", "100000"]
    scope = "fleet"
    prefer = ["cut"]
    stop_timeout = "300ms"

    [jobs.mine]
    type = "always"
    command = ["sleep", "100001"]
"""


@pytest.fixture
def proxy(pg_dsn):
    host = pg_dsn.split("host=", 1)[1].split("&", 1)[0]
    made = Proxy(f"{host}/.s.PGSQL.5432")
    yield made
    made.close()


@pytest.mark.parametrize("cut", ["pause", "drop"])
def test_a_partitioned_device_stops_its_fleet_copy_keeps_its_own_jobs_and_rejoins(fleet, proxy, cut):
    fleet.publish(JOBS)
    schema = fleet.url.split("search_path%3D", 1)[1]
    direct_url = fleet.url
    fleet.url = proxy.url("postgres", "postgres", pg.with_search_path("", schema))
    cut_off = fleet.device("cut")
    fleet.url = direct_url
    fleet.device("other")
    mine = wait_until(lambda: control.call(cut_off.home, "status", job="mine")[0]["pid"], what="mine running")
    wait_until(lambda: [c for c in copies("solo", fleet.root) if c[1] == "cut"], what="solo on the preferred device")
    with Sampler("solo", fleet.root) as sampler:
        getattr(proxy, cut)()
        cut_at = time.monotonic()
        wait_until(lambda: [c for c in copies("solo", fleet.root) if c[1] == "other"], what="solo moved")
        moved = time.monotonic() - cut_at
        assert control.call(cut_off.home, "status", job="mine")[0]["pid"] == mine, "its own job runs on"
        proxy.resume()
        wait_until(lambda: control.call(cut_off.home, "status", job="solo")[0]["status"] == "standby",
                   what="the cut device back, standing by")
        time.sleep(TTL)   # the rejoined device's next lease turns: it must not start a second copy
    assert sampler.most == 1, f"two copies at once: {sampler.seen}"
    assert moved <= TTL + 2, f"moved after {moved:.2f} s"
    assert [c[1] for c in copies("solo", fleet.root)] == ["other"]
