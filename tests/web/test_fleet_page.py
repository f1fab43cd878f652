"""The dashboard's Fleet page in a real headless Chromium, against a real fleet: daemons of
two (or three) devices on the test PostgreSQL (tests/pg.py, tests/fleet/conftest.py),
each serving its own dashboard as the published job web_server of aios/default.toml.

Waits are liveness timeouts, never pass marks for speed.
"""
from __future__ import annotations

import os
import shutil
import signal

import pytest

from aios import control
from tests import pg

from ..fleet.conftest import Fleet, copies, processes_under
from ..integration.conftest import wait_until
from .conftest import WEB_SERVER, free_port, healthy, printed_link

JOBS = """
    [jobs.web_server]
    type = "always"
    program = "web_server.py:main"

    [jobs.svc]
    type = "always"
    command = ["sleep", "100000"]

    [jobs.solo]
    type = "always"
    command = ["sleep", "100001"]
    scope = "fleet"
    prefer = ["b"]
    stop_timeout = "300ms"
"""


class Devices:
    """A fleet whose devices each serve their dashboard on a port of their own."""

    def __init__(self, root):
        self.fleet = Fleet(root, pg.schema_url(pg.schema_for(root)))
        self.fleet.publish(JOBS)
        self.urls: dict[str, str] = {}

    def start(self, name: str):
        home = self.fleet.root / name
        (home / "Programs").mkdir(parents=True)
        shutil.copy(WEB_SERVER, home / "Programs" / "web_server.py")
        port = free_port()
        daemon = self.fleet.device(name, extra_toml=f"[web]\nport = {port}\n")
        self.urls[name] = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(self.urls[name]), what=f"the dashboard of {name}")
        return daemon

    def home(self, name: str):
        return self.fleet.daemons[name].home

    def status(self, name: str, job: str) -> dict:
        return control.call(self.home(name), "status", job=job)[0]

    def close(self) -> None:
        for daemon in self.fleet.daemons.values():
            if daemon.proc.poll() is None:
                daemon.kill()
        for pid in processes_under(self.fleet.root):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="module")
def two(tmp_path_factory, pg_dsn):
    devices = Devices(tmp_path_factory.mktemp("fleet-web"))
    try:
        for name in ("b", "a"):      # b first: it takes solo's lease
            devices.start(name)
        yield devices
    finally:
        devices.close()


@pytest.fixture
def fleet_page(pages):
    """fleet_page(devices, name) -> the Fleet page of `name`'s dashboard, logged in; its
    script errors fail the test at the end."""
    def opener(devices: Devices, name: str):
        page = pages.open(printed_link(devices.home(name)), {"width": 1400, "height": 800})
        page.wait_for_selector("#nav-fleet:not([hidden])")
        page.click("#nav-fleet")
        page.wait_for_selector("#fleet-body tr")
        return page

    return opener


def device_row(page, device: str):
    return page.locator(f'#fleet-body tr[data-device="{device}"]')


def test_every_dashboard_shows_every_device_with_its_leases(two, fleet_page):
    wait_until(lambda: [c for c in copies("solo", two.fleet.root) if c[1] == "b"], what="solo on b, which it prefers")
    epoch = next(lease["epoch"] for lease in control.call(two.home("a"), "fleet")["leases"] if lease["job"] == "solo")
    for viewer in ("a", "b"):
        page = fleet_page(two, viewer)
        for name in ("a", "b"):
            row = device_row(page, name)
            row.locator("td.state .badge.device-up").wait_for()
            row.locator("td.running .tag", has_text="svc").wait_for()
            assert row.locator("td.version").inner_text() == control.call(two.home(name), "ping")["version"]
            assert ("(this)" in row.locator("td.name").inner_text()) == (name == viewer)
        device_row(page, "b").locator("td.leases .tag", has_text=f"solo #{epoch}").wait_for()
        assert device_row(page, "a").locator("td.leases").inner_text() == "–"
        assert page.locator("#fleet-note").inner_text().startswith("2 device(s); fleet jobs version ")


def test_start_stop_and_restart_a_job_on_another_device_from_the_page(two, fleet_page):
    page = fleet_page(two, "a")
    row = device_row(page, "b")
    before = wait_until(lambda: two.status("b", "svc")["pid"], what="svc running on b")
    row.locator("input.fleet-job").fill("svc")
    row.locator('button[data-op="restart"]').click()
    page.locator("#toast", has_text="restart: svc on b").wait_for()        # b's daemon answered
    wait_until(lambda: two.status("b", "svc")["pid"] not in (None, before), what="svc restarted on b")
    row.locator('button[data-op="stop"]').click()
    wait_until(lambda: two.status("b", "svc")["status"] == "stopped", what="svc stopped on b")
    assert two.status("a", "svc")["status"] == "running", "the same job on this device is not touched"
    row.locator("td.running").filter(has_not_text="svc").wait_for()      # b's next heartbeat, read by the page
    row.locator('button[data-op="start"]').click()
    wait_until(lambda: two.status("b", "svc")["status"] == "running", what="svc started again on b")
    row.locator("input.fleet-job").fill("nope")
    row.locator('button[data-op="restart"]').click()
    page.locator("#toast.error", has_text="b: no job named 'nope'").wait_for()


def test_a_job_on_this_device_is_acted_on_directly(two, fleet_page):
    page = fleet_page(two, "b")
    before = wait_until(lambda: two.status("b", "svc")["pid"], what="svc running on b")
    newest = control.call(two.home("b"), "events", limit=1)[0]["id"]
    row = device_row(page, "b")
    row.locator("input.fleet-job").fill("svc")
    row.locator('button[data-op="restart"]').click()
    page.locator("#toast", has_text="restart: svc on b").wait_for()
    wait_until(lambda: two.status("b", "svc")["pid"] not in (None, before), what="svc restarted on b")
    events = control.call(two.home("b"), "events", limit=100, after_id=newest)
    assert [e for e in events if e["name"] == "job_started" and e["job"] == "svc"]
    assert not [e for e in events if e["name"] == "routed"], "no trip through the database for its own device"


def test_a_killed_device_shows_down_and_its_lease_moves_on_the_page(tmp_path, pg_dsn, fleet_page):
    devices = Devices(tmp_path)
    try:
        victim = devices.start("b")     # first: it takes solo's lease
        devices.start("a")
        page = fleet_page(devices, "a")
        device_row(page, "b").locator("td.leases .tag", has_text="solo #").wait_for()
        os.kill(victim.pid, signal.SIGKILL)
        device_row(page, "b").locator("td.state .badge.device-down").wait_for()
        device_row(page, "a").locator("td.leases .tag", has_text="solo #").wait_for()
        assert device_row(page, "b").locator("td.leases").inner_text() == "–"
        assert device_row(page, "a").locator("td.state .badge.device-up").count() == 1
    finally:
        devices.close()
