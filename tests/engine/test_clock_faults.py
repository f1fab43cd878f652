"""Clock faults on the engine, with a fake clock that jumps: wall-clock steps in both
directions (5 s, 1 h, 3 days), a suspended machine, a board that booted with a wrong date.
No burst, no stall, no negative count, no second run or draw on the same day."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from aios.spec import JobState

from .fakes import FakeClock, Harness, jobs

BERLIN = ZoneInfo("Europe/Berlin")
DAY = 86400.0


def at(text: str) -> float:
    """An instant from 'YYYY-mm-dd HH:MM' in Berlin."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=BERLIN).timestamp()


def harness(toml: str, wall: float, states=(), boot_id: str = "boot-1") -> Harness:
    return Harness(jobs(toml), clock=FakeClock(wall=wall, boot_id=boot_id), zone=BERLIN, states=states)


def finish_runs(h: Harness, name: str) -> None:
    for pid in h.pids(name):
        h.processes.exit(pid, 0)
    h.settle()


def run_for(h: Harness, name: str, seconds: float, step: float = 60.0) -> None:
    """Let time pass, each run of `name` ending a second after it started."""
    end = h.clock.boot() + seconds
    while h.clock.boot() < end:
        h.advance(min(step, end - h.clock.boot()))
        h.advance(1)
        finish_runs(h, name)


INTERVAL = """
    [jobs.tick]
    type = "interval"
    every = "30m"
    catch_up = "all"
    command = ["tick"]
"""


@pytest.mark.parametrize("step", [-5.0, 5.0, -3600.0, 3600.0, -3 * DAY, 3 * DAY])
def test_an_interval_keeps_its_rhythm_whatever_the_wall_clock_does(step):
    h = harness(INTERVAL, at("2026-03-10 12:00"))
    run_for(h, "tick", 3600)
    before = len(h.runs("tick"))
    h.clock.step_wall(step)
    run_for(h, "tick", 3 * 3600)
    runs = h.runs("tick")
    assert len(runs) - before == 6, [r.started for r in runs]
    assert not [e for e in h.events("runs_missed")], "a step of the wall clock is not a missed run"
    assert h.status("tick") == "waiting"


def test_a_suspended_machine_runs_an_interval_once_on_resume_not_a_burst():
    h = harness(INTERVAL.replace('"all"', '"once"'), at("2026-03-10 12:00"))
    run_for(h, "tick", 600)
    count = len(h.runs("tick"))
    h.clock.advance(5 * 3600)           # suspended: no timer fired meanwhile
    h.settle()
    h.advance(0.5)
    finish_runs(h, "tick")
    assert len(h.runs("tick")) == count + 1


DAILY = """
    [jobs.report]
    type = "daily"
    time = "09:00"
    command = ["report"]
"""


@pytest.mark.parametrize("back", [5.0, 3600.0, 8 * 3600.0])
def test_a_step_back_after_a_daily_run_does_not_run_it_again_that_day(back):
    h = harness(DAILY, at("2026-06-01 08:59"))
    h.advance(120)
    finish_runs(h, "report")
    assert len(h.runs("report")) == 1
    h.clock.step_wall(-back)
    h.advance(6 * 3600)
    finish_runs(h, "report")
    assert len(h.runs("report")) == 1
    h.advance(DAY + 3 * 3600)
    finish_runs(h, "report")
    assert len(h.runs("report")) == 2, "the next day runs as usual"


def test_a_step_forward_of_days_within_a_boot_is_not_downtime():
    h = harness(DAILY, at("2026-06-01 10:00"))
    h.settle()
    h.clock.step_wall(3 * DAY)
    h.advance(61)          # the next look at the wall clock
    finish_runs(h, "report")
    assert len(h.runs("report")) <= 1 and not h.events("runs_missed")
    assert h.job("report").state.next_due > h.clock.wall()


def test_a_board_that_booted_with_a_wrong_date_does_not_stall_its_daily_job():
    wrong_year = at("2029-06-01 09:00")
    h = harness(DAILY, at("2026-06-01 08:00"), boot_id="boot-2",
                states=[JobState(job="report", last_slot=wrong_year, slot_boot=1.0, boot_id="boot-1")])
    h.advance(3600 + 60)
    finish_runs(h, "report")
    assert len(h.runs("report")) == 1, "today's 09:00 runs; the corrected clock does not wait for 2029"


RANDOM = """
    [jobs.lucky]
    type = "random_daily"
    after = "10:00"
    before = "16:00"
    command = ["lucky"]
"""


def test_random_daily_draws_once_per_day_through_steps_and_wake_ups():
    h = harness(RANDOM, at("2026-06-01 08:00"))
    first = h.job("lucky").state.draw_at
    for step in (-3600.0, 1800.0, -5.0):
        h.clock.step_wall(step)
        h.advance(120)
        assert h.job("lucky").state.draw_at == first, "no second draw on the same day"
    h.advance(DAY)
    finish_runs(h, "lucky")
    runs = [r.started for r in h.runs("lucky")]
    assert len(runs) == 1 or len({datetime.fromtimestamp(t, BERLIN).date() for t in runs}) == len(runs)
