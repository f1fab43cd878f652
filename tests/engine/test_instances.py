"""`instances = N` on the engine, with fake clocks and processes: the copies of a job,
acting on them by the job's name, changing their count by apply without touching the
others."""
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
    diff = apply(h, tmp_path, WEB.format(n=4).replace('command = ["web"]', 'command = ["web", "-v"]'))
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


def test_signal_reaches_every_copy_too():
    h = web(2)
    assert len(h.engine.ops.signal("web", "usr1")) == 2
    assert {sig for _, sig in h.processes.signals} == {signal.SIGUSR1}
