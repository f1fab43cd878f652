"""`instances = N` and `reload_signal` on the engine, with fake clocks and processes: the
copies of a job, acting on them by the job's name, changing their count by apply without
touching the others, and reload."""
from __future__ import annotations

import signal

import pytest

from aios import config
from aios.engine.operations import OperationError
from aios.engine.reconcile import reconcile

from .fakes import Harness, jobs

WEB = """
[jobs.web]
type = "always"
command = ["web"]
instances = {n}
reload_signal = "HUP"

[jobs.other]
type = "always"
command = ["other"]
"""


def web(n: int = 3) -> Harness:
    return Harness(jobs(WEB.format(n=n)))


def copies(h: Harness) -> list[str]:
    return sorted(name for name in h.engine.jobs if name.startswith("web."))


def test_each_copy_is_a_job_of_its_own_with_its_number_in_its_environment():
    h = web()
    assert copies(h) == ["web.0", "web.1", "web.2"]
    env = {s["env"]["AIOS_JOB"]: s["env"]["AIOS_INSTANCE"] for s in h.processes.spawned if s["argv"] == ["web"]}
    assert env == {"web.0": "0", "web.1": "1", "web.2": "2"}
    assert "AIOS_INSTANCE" not in next(s for s in h.processes.spawned if s["argv"] == ["other"])["env"]
    assert [row["name"] for row in h.engine.ops.status("web")] == ["web.0", "web.1", "web.2"]


def test_the_jobs_name_acts_on_every_copy_and_a_copys_name_on_that_one():
    h = web()
    h.engine.ops.stop("web")
    h.settle()
    assert [h.status(name) for name in copies(h)] == ["stopped"] * 3 and h.status("other") == "running"
    h.engine.ops.start("web.1")
    h.settle()
    assert [h.status(name) for name in copies(h)] == ["stopped", "running", "stopped"]
    before = h.pids("web.1")
    h.engine.ops.restart("web")
    h.settle()
    assert [h.status(name) for name in copies(h)] == ["running"] * 3 and h.pids("web.1") != before
    h.engine.ops.disable("web")
    h.settle()
    assert [h.status(name) for name in copies(h)] == ["disabled"] * 3
    with pytest.raises(OperationError, match="no job named 'we'"):
        h.engine.ops.stop("we")


def apply(h: Harness, tmp_path, text: str) -> dict:
    (tmp_path / "Programs").mkdir(exist_ok=True)
    return reconcile(h.engine, config.load(tmp_path, text))


def test_apply_adds_or_removes_copies_and_leaves_the_others_running(tmp_path):
    h = web(3)
    pids = {name: h.pids(name) for name in copies(h)}
    diff = apply(h, tmp_path, WEB.format(n=2))
    h.settle()
    assert diff["removed"] == ["web.2"] and "web.2" not in h.engine.jobs
    assert {name: h.pids(name) for name in copies(h)} == {k: pids[k] for k in ("web.0", "web.1")}
    diff = apply(h, tmp_path, WEB.format(n=4))
    h.settle()
    assert diff["added"] == ["web.2", "web.3"] and diff["changed"] == []
    assert h.pids("web.0") == pids["web.0"] and h.status("web.3") == "running"
    diff = apply(h, tmp_path, WEB.format(n=4).replace('"HUP"', '"USR1"'))
    h.settle()
    assert sorted(diff["changed"]) == ["web.0", "web.1", "web.2", "web.3"], "a changed field changes every copy"


def test_copies_of_a_job_whose_new_table_is_invalid_keep_running(tmp_path):
    h = web(2)
    pids = h.pids("web.0")
    diff = apply(h, tmp_path, WEB.format(n=2).replace("instances = 2", "instances = 0"))
    h.settle()
    assert sorted(diff["unchanged"]) == ["other", "web.0", "web.1"] and h.pids("web.0") == pids
    assert "instances = 0 must be an integer from 1 to 256" in h.engine.describe(h.job("web.0"))["why"]
    assert [row["status"] for row in h.engine.ops.status()] == ["running"] * 3, "no second row for web"


def test_reload_sends_the_reload_signal_to_every_copy():
    h = web()
    h.processes.stubborn.update(h.processes.alive)     # a program that reloads on HUP
    pids = h.engine.ops.reload("web")
    h.settle()
    assert sorted(pids) == sorted(p for name in copies(h) for p in h.pids(name))
    assert {sig for _, sig in h.processes.signals} == {signal.SIGHUP}
    assert [e.job for e in h.events("reloaded")] == ["web.0", "web.1", "web.2"]
    assert h.events("reloaded")[0].message == f"HUP sent to pid(s) {h.pids('web.0')[0]}"
    assert h.engine.ops.reload("web.2") == h.pids("web.2")


def test_reload_without_a_reload_signal_says_to_restart():
    h = web()
    with pytest.raises(OperationError) as caught:
        h.engine.ops.reload("other")
    assert str(caught.value) == ("job 'other' has no reload_signal; use `aios restart other`, or set "
                                 "reload_signal = \"HUP\" in its table if the program reloads on a signal")
    assert h.processes.signals == []


def test_reload_of_a_stopped_job_says_nothing_runs():
    h = web()
    h.engine.ops.stop("web")
    h.settle()
    with pytest.raises(OperationError, match="job 'web' has no running process to signal"):
        h.engine.ops.reload("web")


def test_signal_reaches_every_copy_too():
    h = web(2)
    assert len(h.engine.ops.signal("web", "usr1")) == 2
    assert {sig for _, sig in h.processes.signals} == {signal.SIGUSR1}
