"""Hooks (on_failure, on_success) and `after` on the engine, with fake clocks and fake
processes: which run ends fire what, with which facts, written before the run's end."""
from __future__ import annotations

import errno
import json

import pytest

from aios.engine.operations import OperationError
from aios.store.memory import MemoryStore

from .fakes import Harness, jobs

NOTIFY = """
[jobs.notify]
type = "trigger"
command = ["notify"]
max_parallel = 10
"""


def hook_runs(h: Harness) -> list[list]:
    """The argv tails of every run of notify: the facts it was given."""
    return [spawn["argv"][1:] for spawn in h.processes.spawned if spawn["argv"][0] == "notify"]


def hook_env(h: Harness) -> list[dict]:
    return [{k: v for k, v in spawn["env"].items() if k.startswith("AIOS_HOOK_")}
            for spawn in h.processes.spawned if spawn["argv"][0] == "notify"]


def test_on_failure_fires_once_after_the_last_attempt_with_the_facts_as_arguments_and_variables():
    h = Harness(jobs("""
        [jobs.backup]
        type = "trigger"
        command = ["backup"]
        retries = 2
        backoff = "1s"
        on_failure = "notify"
    """ + NOTIFY))
    h.engine.ops.trigger("backup")
    h.settle()
    for code in (3, 4):
        h.exit("backup", code)
        assert hook_runs(h) == [], "a failed attempt with a retry left is no failure yet"
        h.advance(10)
    h.exit("backup", 5)
    last = h.runs("backup")[-1]
    assert hook_runs(h) == [["backup", "failed", "5", str(last.id)]]
    assert hook_env(h) == [{"AIOS_HOOK_KIND": "on_failure", "AIOS_HOOK_JOB": "backup", "AIOS_HOOK_OUTCOME": "failed",
                            "AIOS_HOOK_EXIT_CODE": "5", "AIOS_HOOK_RUN_ID": str(last.id),
                            "AIOS_HOOK_WHY": "failed after 3 attempts"}]
    trigger = h.store.get_trigger(2)      # 1 is backup's own
    assert trigger.job == "notify" and trigger.kwargs["aios_hook"]["run_id"] == last.id


def test_on_success_fires_on_an_ok_run_and_neither_fires_for_a_run_stopped_on_request():
    h = Harness(jobs("""
        [jobs.sync]
        type = "interval"
        every = "1h"
        command = ["sync"]
        on_success = "notify"
        on_failure = "notify"
    """ + NOTIFY))
    h.exit("sync", 0)
    assert hook_runs(h) == [["sync", "ok", "0", str(h.runs("sync")[-1].id)]]
    h.advance(3600)
    assert h.pids("sync")
    h.engine.ops.stop("sync")
    h.settle()
    assert len(hook_runs(h)) == 1, "a run stopped on request is neither a success nor a failure"


def test_a_timeout_and_a_kill_are_failures():
    h = Harness(jobs("""
        [jobs.slow]
        type = "trigger"
        command = ["slow"]
        timeout = "5s"
        on_failure = "notify"
    """ + NOTIFY))
    h.engine.ops.trigger("slow")
    h.advance(6)
    h.engine.ops.trigger("slow")
    h.settle()
    h.processes.exit(h.pids("slow")[0], None, 9)
    h.settle()
    assert [facts[:3] for facts in hook_runs(h)] == [["slow", "timeout", "null"], ["slow", "killed", "null"]]
    assert [env["AIOS_HOOK_EXIT_CODE"] for env in hook_env(h)] == ["", ""]


def test_an_always_job_fires_on_failure_each_time_it_enters_failed():
    h = Harness(jobs("""
        [jobs.web]
        type = "always"
        command = ["web"]
        retries = 2
        backoff = "1s"
        min_uptime = "1m"
        failed_cooldown = "10m"
        on_failure = "notify"
    """ + NOTIFY))
    for _ in range(2):
        h.exit("web", 1)
        h.advance(5)
    assert h.status("web") == "failed" and len(hook_runs(h)) == 1
    assert hook_env(h)[0]["AIOS_HOOK_WHY"].startswith("crash loop: 2 quick exits in a row")
    h.advance(600)
    h.exit("web", 1)     # the probe after the cool-down fails at once: failed again, told again
    h.advance(5)
    h.exit("web", 1)
    assert h.status("web") == "failed" and len(hook_runs(h)) == 2


def test_an_always_job_done_with_restart_on_failure_fires_on_success():
    h = Harness(jobs("""
        [jobs.once]
        type = "always"
        command = ["once"]
        restart = "on-failure"
        on_success = "notify"
    """ + NOTIFY))
    h.advance(5)
    h.exit("once", 0)
    assert h.status("once") == "stopped" and [f[:3] for f in hook_runs(h)] == [["once", "ok", "0"]]


def test_a_job_that_cannot_be_spawned_fires_on_failure_when_it_enters_failed():
    h = Harness(jobs("""
        [jobs.broken]
        type = "always"
        command = ["/no/such"]
        retries = 2
        backoff = "1s"
        on_failure = "notify"
    """ + NOTIFY))
    h.processes.fail["/no/such"] = OSError(errno.ENOENT, "cannot start '/no/such': No such file or directory")
    h.engine.ops.restart("broken")
    h.advance(5)
    assert h.status("broken") == "failed"
    assert [f[:3] for f in hook_runs(h)] == [["broken", "spawn_failed", "null"]]
    assert "No such file or directory" in hook_env(h)[0]["AIOS_HOOK_WHY"]


class OrderedStore(MemoryStore):
    """The in-memory store, noting the order of trigger additions and run ends."""

    def __init__(self, device):
        super().__init__(device)
        self.order: list[str] = []

    def add_trigger(self, job, args=(), kwargs=None, now=0.0, target=None):
        self.order.append(f"trigger {job}")
        return super().add_trigger(job, args, kwargs, now, target)

    def finish_run(self, run, finish_trigger=False):
        self.order.append(f"end {run.job}")
        return super().finish_run(run, finish_trigger)


def test_the_hook_trigger_is_stored_before_the_end_of_its_run(monkeypatch):
    monkeypatch.setattr("tests.engine.fakes.MemoryStore", OrderedStore)
    h = Harness(jobs("""
        [jobs.job]
        type = "trigger"
        command = ["job"]
        on_failure = "notify"

        [jobs.after_it]
        type = "trigger"
        command = ["after_it"]
        after = ["job"]
    """ + NOTIFY))
    h.engine.ops.trigger("job")
    h.settle()
    h.exit("job", 2)
    h.engine.ops.trigger("job")
    h.settle()
    h.exit("job", 0)
    ends = [entry for entry in h.store.order if entry != "end notify"]
    assert ends == ["trigger job", "trigger notify", "end job", "trigger job", "trigger after_it", "end job"]


# ---------------------------------------------------------------- after

AFTER = """
[jobs.a]
type = "trigger"
command = ["a"]

[jobs.b]
type = "trigger"
command = ["b"]

[jobs.report]
type = "trigger"
command = ["report"]
after = ["a", "b"]
"""


def finish(h: Harness, name: str, code: int = 0) -> None:
    h.engine.ops.trigger(name)
    h.settle()
    h.advance(1)
    h.exit(name, code)


def report_runs(h: Harness) -> int:
    return sum(spawn["argv"] == ["report"] for spawn in h.processes.spawned)


def test_after_runs_once_every_listed_job_succeeded_since_its_last_run():
    h = Harness(jobs(AFTER))
    finish(h, "a")
    assert report_runs(h) == 0, "b has not succeeded yet"
    finish(h, "b")
    assert report_runs(h) == 1
    assert h.processes.spawned[-1]["env"]["AIOS_AFTER"] == "a,b"
    assert not any(k.startswith("AIOS_HOOK") for k in h.processes.spawned[-1]["env"])
    h.advance(1)
    h.exit("report")
    finish(h, "a")
    assert report_runs(h) == 1, "b's success is older than the report's last run"
    finish(h, "b")
    assert report_runs(h) == 2


def test_a_failed_latest_run_holds_after_back():
    h = Harness(jobs(AFTER))
    finish(h, "a")
    finish(h, "b", 1)
    finish(h, "a")
    assert report_runs(h) == 0
    finish(h, "b")
    assert report_runs(h) == 1


def test_never_two_after_triggers_wait_at_once():
    h = Harness(jobs(AFTER))
    h.engine.ops.stop("report")         # held: its triggers wait
    h.settle()
    finish(h, "b")
    for _ in range(3):
        finish(h, "a")
    pending = h.store.pending_triggers("report")
    assert len(pending) == 1 and pending[0].kwargs == {"aios_after": ["a", "b"]}
    h.engine.ops.start("report")
    h.settle()
    assert report_runs(h) == 1 and h.store.pending_triggers("report") == []


def test_a_success_while_the_job_runs_queues_one_more_run():
    h = Harness(jobs(AFTER))
    finish(h, "a")
    finish(h, "b")
    assert h.pids("report")
    finish(h, "a")
    finish(h, "b")
    h.exit("report")
    assert report_runs(h) == 2


def test_the_hook_facts_reach_a_program_job_as_arguments_not_as_a_keyword():
    h = Harness(jobs("""
        [jobs.job]
        type = "trigger"
        command = ["job"]
        on_failure = "tell"

        [jobs.tell]
        type = "trigger"
        program = "notify.py:main"
        kwargs = { url = "http://127.0.0.1:9/" }
    """))
    h.engine.ops.trigger("job")
    h.settle()
    h.exit("job", 7)
    payload = json.loads(h.processes.spawned[-1]["argv"][-1])
    assert payload == {"args": ["job", "failed", 7, h.runs("job")[-1].id], "kwargs": {"url": "http://127.0.0.1:9/"}}


def test_a_user_may_hand_a_hook_its_facts_but_not_malformed_ones():
    """`aios trigger notify` with facts tries a hook out; anything else under the daemon's
    keys is refused at once, and a command job still takes no other keyword."""
    h = Harness(jobs(NOTIFY))
    h.engine.ops.trigger("notify", [], {"aios_hook": {"job": "backup", "outcome": "failed"}})
    h.settle()
    assert hook_runs(h) == [["backup", "failed", "null", "null"]]
    with pytest.raises(OperationError, match="kwargs aios_hook must be an object"):
        h.engine.ops.trigger("notify", [], {"aios_hook": "failed"})
    with pytest.raises(OperationError, match="keyword arguments are for program jobs"):
        h.engine.ops.trigger("notify", [], {"aios_hook": {}, "to": "me"})
