"""One copy in the whole fleet: a fleet job runs on exactly one device, moves within the
lease ttl when its holder dies or freezes, and never runs twice at once."""
from __future__ import annotations

import os
import signal
import time

from aios import control

from .conftest import TTL, Sampler, copies, wait_until

SOLO = """
    [jobs.solo]
    type = "always"
    command = ["sleep", "100000"]
    scope = "fleet"
    stop_timeout = "300ms"
"""


def one_copy(fleet) -> tuple[int, str]:
    found = wait_until(lambda: copies("solo", fleet.root) if len(copies("solo", fleet.root)) == 1 else None,
                       what="exactly one copy of the fleet job")
    return found[0]


def test_a_fleet_job_runs_once_and_moves_when_its_holder_is_killed(fleet):
    fleet.publish(SOLO)
    for name in ("a", "b", "c"):
        fleet.device(name)
    with Sampler("solo", fleet.root) as sampler:
        pid, holder = one_copy(fleet)
        os.kill(fleet.daemons[holder].pid, signal.SIGKILL)      # the holder's daemon dies; its copy keeps running
        killed = time.monotonic()
        wait_until(lambda: [c for c in copies("solo", fleet.root) if c[1] != holder], what="a copy elsewhere")
        moved = time.monotonic() - killed
    assert sampler.most == 1, f"two copies at once: {sampler.seen}"
    assert moved <= TTL + 1.5, f"moved after {moved:.2f} s (ttl {TTL} s)"
    status = {d: control.call(fleet.daemons[d].home, "status", job="solo")[0]["status"]
              for d in ("a", "b", "c") if d != holder}
    assert sorted(status.values()) == ["running", "standby"]


def test_a_frozen_holder_loses_its_copy_before_another_device_starts_one(fleet):
    fleet.publish(SOLO)
    for name in ("a", "b"):
        fleet.device(name)
    with Sampler("solo", fleet.root) as sampler:
        pid, holder = one_copy(fleet)
        frozen = fleet.daemons[holder]
        os.kill(frozen.pid, signal.SIGSTOP)                     # past its lease: it cannot renew or stop anything
        wait_until(lambda: [c for c in copies("solo", fleet.root) if c[1] != holder], what="a copy elsewhere")
        os.kill(frozen.pid, signal.SIGCONT)
        time.sleep(TTL)   # the thawed daemon's first turns: it must not start a second copy
    assert sampler.most == 1, f"two copies at once: {sampler.seen}"
    assert len(copies("solo", fleet.root)) == 1


def test_a_tagged_fleet_job_never_lands_on_a_device_without_the_tag(fleet):
    fleet.publish(SOLO.replace('scope = "fleet"', 'scope = "fleet"\n    tags = ["gpu"]'))
    fleet.device("plain")
    fleet.device("gpu-box", tags="gpu")
    pid, holder = one_copy(fleet)
    assert holder == "gpu-box"
    os.kill(fleet.daemons["gpu-box"].pid, signal.SIGKILL)
    wait_until(lambda: not copies("solo", fleet.root), what="the copy to stop at its lease's end")
    row = control.call(fleet.daemons["plain"].home, "status", job="solo")[0]
    assert row["status"] == "ineligible" and not copies("solo", fleet.root)


WORKERS = """
    [jobs.work]
    type = "trigger"
    command = ["sh", "-c", "echo $AIOS_DEVICE_ID >> ran-$AIOS_DEVICE_ID", "work"]

    [jobs.svc]
    type = "always"
    command = ["sleep", "100000"]
"""


def test_an_operation_or_a_trigger_for_another_device_goes_through_the_database(fleet):
    from .conftest import copies

    fleet.publish(WORKERS)
    a, b = fleet.device("a"), fleet.device("b")
    svc_b = wait_until(lambda: control.call(b.home, "status", job="svc")[0]["pid"], what="svc on b")
    assert control.call(a.home, "route", device="b", request={"op": "restart", "job": "svc"}) == "ok"
    wait_until(lambda: control.call(b.home, "status", job="svc")[0]["pid"] not in (None, svc_b),
               what="svc restarted on b")
    with control.Client(a.home) as client:
        error = None
        try:
            client.call("route", device="b", request={"op": "restart", "job": "nope"})
        except control.AiosError as exc:
            error = str(exc)
    assert error.startswith("b: no job named 'nope'")
    for _ in range(5):
        control.call(a.home, "trigger", job="work", device="b")
    wait_until(lambda: (b.home / "ran-b").exists() and len((b.home / "ran-b").read_text().split()) == 5,
               what="five runs on b")
    assert not (a.home / "ran-a").exists(), "a trigger for b never runs on a"
    assert len(copies("svc", fleet.root)) == 2, "a device-scope job runs on every device"


def test_aios_apply_on_one_device_publishes_the_fleets_jobs_and_every_device_converges(fleet):
    import time

    fleet.publish(WORKERS)
    a = fleet.device("a", extra_toml=WORKERS)
    b = fleet.device("b", extra_toml="""
        [jobs.mine]
        type = "always"
        command = ["sleep", "100002"]
        local = true
    """)
    wait_until(lambda: {j["name"] for j in control.call(b.home, "status")} == {"work", "svc", "mine"},
               what="b runs the fleet's jobs and its own")
    (a.home / "aios.toml").write_text((a.home / "aios.toml").read_text() + """
[jobs.extra]
type = "always"
command = ["sleep", "100003"]
""")
    applied = time.monotonic()
    control.call(a.home, "apply")
    wait_until(lambda: "extra" in {j["name"] for j in control.call(b.home, "status")}, what="b converged")
    took = time.monotonic() - applied
    assert {j["name"] for j in control.call(b.home, "status")} == {"work", "svc", "mine", "extra"}
    assert took < 5, f"converged after {took:.2f} s"
    assert "mine" not in {j["name"] for j in control.call(a.home, "status")}, "a device's own job stays its own"


def test_status_fleet_shows_every_devices_jobs(fleet):
    import json
    import subprocess
    import sys

    from ..integration.conftest import ROOT

    fleet.publish(SOLO)
    a, b = fleet.device("a"), fleet.device("b")
    one_copy(fleet)
    def rows():
        done = subprocess.run([sys.executable, "-m", "aios", "--home", str(a.home), "status", "--fleet", "--json"],
                              capture_output=True, text=True, cwd=ROOT)
        return sorted((r["device"], r["name"], r["status"]) for r in json.loads(done.stdout))
    found = wait_until(lambda: rows() if {r[2] for r in rows()} == {"running", "standby"} else None,
                       what="both devices' states")
    assert [(d, n) for d, n, _ in found] == [("a", "solo"), ("b", "solo")]
    listing = subprocess.run([sys.executable, "-m", "aios", "--home", str(b.home), "fleet"],
                             capture_output=True, text=True, cwd=ROOT)
    assert listing.returncode == 0 and "solo#1" in listing.stdout and "b (this)" in listing.stdout


def test_a_fleet_job_taking_the_lease_keeps_the_schedule_where_it_ran(fleet):
    from aios.spec import JobState
    from aios.store import open_store

    fleet.publish("""
        [jobs.hourly]
        type = "interval"
        every = "1h"
        command = ["true"]
        scope = "fleet"
    """)
    for device, ago in (("a", 1800), ("b", 5 * 3600)):     # a ran it half an hour ago; b, five hours ago
        store = open_store(fleet.url, device)
        store.save_state(JobState(job="hourly", last_slot=time.time() - ago))
        store.close()
    b = fleet.device("b")
    status = wait_until(lambda: (s := control.call(b.home, "status", job="hourly")[0])["why"].startswith("next run")
                        and s, what="b holding the lease and planning the next run")
    assert control.call(b.home, "history", job="hourly") == [], "b caught up an hour a had run"
    assert 1700 < status["next_due"] - time.time() <= 1800, "not a's next slot"
