"""The daemon's start-up turns (engine/daemon.py) on fake clocks and processes: the
zygotes of program jobs are begun before the first turn, and while one is starting the
jobs that fork from it wait, without holding up the jobs before them or the loop."""
from __future__ import annotations

import pytest

from aios import supervisor
from aios.engine import daemon

from .fakes import Harness, jobs


@pytest.fixture(autouse=True)
def not_a_subreaper_after():
    """The last start-up turn makes the daemon a child subreaper: this process is one only
    for the test (other tests expect an orphan not to become its child)."""
    yield
    supervisor.become_subreaper(False)

JOBS = """
[jobs.first]
type = "always"
command = ["first"]
priority = 3

[jobs.py]
type = "always"
program = "serve.py:main"
priority = 2

[jobs.spawned]
type = "always"
program = "serve.py:main"
start = "spawn"
priority = 2

[jobs.last]
type = "always"
command = ["last"]
priority = 1

[jobs.on_call]
type = "trigger"
program = "handle.py:main"

[jobs.off]
type = "trigger"
program = "handle.py:main"
enabled = false
"""


def started(h: Harness) -> list[str]:
    return [s["env"]["AIOS_JOB"] for s in h.processes.spawned]


def begin(h: Harness, hold: bool) -> int:
    """As Daemon.start: zygotes begun, then the turns; how many always jobs fork."""
    forking = daemon._warm_zygotes(h.engine)
    order = sorted(h.engine.jobs.values(), key=lambda j: -j.spec.priority)
    daemon._start_in_turns(h.engine, order, {}, hold)
    h.settle()
    return forking


def test_zygotes_are_begun_for_every_enabled_program_job_before_the_first_turn():
    h = Harness(jobs(JOBS), start=False)
    assert begin(h, hold=False) == 1        # py: the one always job that forks
    jobs_of = [argv[-2] for argv in h.processes.prepared]
    assert sorted(jobs_of) == ["handle.py:main", "serve.py:main", "serve.py:main"]


def test_while_a_zygote_starts_the_jobs_that_fork_from_it_wait_and_the_rest_go_first():
    h = Harness(jobs(JOBS), start=False)
    h.processes.warm_until = h.clock.boot() + 0.2
    begin(h, hold=True)
    assert started(h) == ["first"]          # py forks: it waits, and "spawned" and "last" behind it
    h.advance(0.1)
    assert started(h) == ["first"]
    h.advance(0.1 + daemon.WARM_POLL)
    assert started(h) == ["first", "py", "spawned", "last"]


def test_without_a_starting_zygote_or_a_reason_to_wait_every_job_starts_in_the_first_turns():
    for warm_until, hold in ((None, True), (0.2, False)):
        h = Harness(jobs(JOBS), start=False)
        h.processes.warm_until = None if warm_until is None else h.clock.boot() + warm_until
        begin(h, hold)
        assert started(h) == ["first", "py", "spawned", "last"]


@pytest.mark.parametrize("forking, cores, worth", [(1, 2, False), (2, 2, False), (3, 2, True), (2, 1, True),
                                                   (200, 2, True), (0, 1, False)])
def test_always_jobs_wait_for_their_zygote_only_when_more_of_them_start_than_there_are_cores(
        forking, cores, worth):
    assert daemon._worth_waiting(forking, cores) is worth
