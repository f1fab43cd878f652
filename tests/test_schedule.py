"""Every scheduling rule, on fixed aware datetimes (DST days included) and as properties."""
from __future__ import annotations

import random
from aios.spec import replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from aios import schedule
from aios.schedule import Done, GiveUp, Restart, Retry, plan
from aios.spec import JobState, Outcome, parse_job

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
ZONES = [NY, BERLIN, LORD_HOWE]


def job(kind: str, **fields):
    return parse_job("j", {"type": kind, "command": ["true"], **fields})


def local(tz, *parts) -> datetime:
    return datetime(*parts, tzinfo=tz)


def at(ts: float, tz) -> datetime:
    return datetime.fromtimestamp(ts, tz)


# ---------------------------------------------------------------- daily

def test_daily_first_sight_waits_for_its_time_today():
    spec = job("daily", time="09:30")
    p = plan(spec, JobState(job="j"), local(NY, 2024, 5, 6, 8, 0))
    assert p.runs == 0
    assert at(p.next_due, NY) == local(NY, 2024, 5, 6, 9, 30)


def test_daily_first_sight_after_its_time_waits_for_tomorrow():
    """The original checked `hour >= h and minute >= m`, which misses 09:30 at 10:10."""
    spec = job("daily", time="09:30")
    p = plan(spec, JobState(job="j"), local(NY, 2024, 5, 6, 10, 10))
    assert p.runs == 0
    assert at(p.next_due, NY) == local(NY, 2024, 5, 7, 9, 30)


def test_daily_runs_when_its_slot_comes():
    spec = job("daily", time="09:30")
    state = JobState(job="j", last_slot=local(NY, 2024, 5, 5, 9, 30).timestamp())
    p = plan(spec, state, local(NY, 2024, 5, 6, 9, 30, 0, 2000))
    assert (p.runs, p.missed) == (1, 0)
    assert at(p.due, NY) == local(NY, 2024, 5, 6, 9, 30)
    assert at(p.next_due, NY) == local(NY, 2024, 5, 7, 9, 30)


@pytest.mark.parametrize("catch_up, runs", [("once", 1), ("skip", 0), ("all", 3)])
def test_daily_catch_up_after_three_missed_days(catch_up, runs):
    spec = job("daily", time="09:30", catch_up=catch_up)
    state = JobState(job="j", last_slot=local(NY, 2024, 5, 3, 9, 30).timestamp())
    p = plan(spec, state, local(NY, 2024, 5, 6, 12, 0))
    assert p.runs == runs
    assert p.missed == 3
    assert at(p.last_slot, NY) == local(NY, 2024, 5, 6, 9, 30)
    assert at(p.next_due, NY) == local(NY, 2024, 5, 7, 9, 30)


def test_daily_catch_up_all_is_capped():
    spec = job("daily", time="09:30", catch_up="all", catch_up_max=4)
    state = JobState(job="j", last_slot=local(NY, 2024, 1, 1, 9, 30).timestamp())
    p = plan(spec, state, local(NY, 2024, 5, 6, 12, 0))
    assert p.runs == 4
    assert at(p.last_slot, NY) == local(NY, 2024, 5, 6, 9, 30)


@pytest.mark.parametrize("tz, day, clock, expected", [
    # spring forward: 02:30 does not exist; it lands at 03:30, once
    (NY, date(2024, 3, 10), "02:30", local(NY, 2024, 3, 10, 3, 30)),
    (BERLIN, date(2024, 3, 31), "02:30", local(BERLIN, 2024, 3, 31, 3, 30)),
    (LORD_HOWE, date(2024, 10, 6), "02:15", local(LORD_HOWE, 2024, 10, 6, 2, 45)),
    # fall back: 01:30 happens twice; the first one counts
    (NY, date(2024, 11, 3), "01:30", datetime(2024, 11, 3, 5, 30, tzinfo=ZoneInfo("UTC"))),
    (BERLIN, date(2024, 10, 27), "02:30", datetime(2024, 10, 27, 0, 30, tzinfo=ZoneInfo("UTC"))),
])
def test_daily_slot_on_dst_days(tz, day, clock, expected):
    spec = job("daily", time=clock)
    before = datetime.combine(day, datetime.min.time(), tzinfo=tz).timestamp()
    slot = schedule.daily_slot_after(spec, before, tz)
    assert slot == expected.timestamp()
    assert at(schedule.daily_slot_after(spec, slot, tz), tz).date() == day + timedelta(days=1)


def simulate_daily(spec, tz, start: datetime, end: datetime) -> list[datetime]:
    """Run the job every time it comes due, as the engine would, until `end`."""
    state, now, runs = JobState(job="j"), start, []
    while True:
        p = plan(spec, state, now)
        runs += [at(p.due, tz)] * p.runs if p.runs else []
        state = replace(state, last_slot=p.last_slot)
        now = at(p.next_due, tz)
        if p.next_due >= end.timestamp():
            return runs


@settings(max_examples=60, deadline=None)
@given(tz=st.sampled_from(ZONES), start=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
       start_minute=st.integers(0, 24 * 60 - 1), hour=st.integers(0, 23), minute=st.integers(0, 59),
       days=st.integers(1, 400))
def test_daily_runs_exactly_once_per_calendar_day(tz, start, start_minute, hour, minute, days):
    spec = job("daily", time=f"{hour:02}:{minute:02}")
    begin = datetime.combine(start, datetime.min.time(), tzinfo=tz) + timedelta(minutes=start_minute)
    end = datetime.combine(start + timedelta(days=days), datetime.min.time(), tzinfo=tz)
    runs = simulate_daily(spec, tz, begin, end)
    run_days = [r.date() for r in runs]
    assert run_days == sorted(set(run_days)), "a day ran twice or out of order"
    expected = [start + timedelta(days=i) for i in range(days + 1)
                if begin.timestamp() < schedule.at_local(start + timedelta(days=i), spec.time, tz) < end.timestamp()]
    assert run_days == expected


@settings(max_examples=100, deadline=None)
@given(tz=st.sampled_from(ZONES), ts=st.floats(1.6e9, 1.9e9), last_offset=st.floats(0, 5e6),
       kind=st.sampled_from(["daily", "interval", "random_daily"]), u=st.floats(0, 0.999))
def test_next_due_is_strictly_in_the_future(tz, ts, last_offset, kind, u):
    fields = {"daily": {"time": "02:30"}, "interval": {"every": "90s"},
              "random_daily": {"after": "01:00", "before": "03:00"}}[kind]
    spec = job(kind, **fields)
    now = at(ts, tz)
    p = plan(spec, JobState(job="j", last_slot=ts - last_offset), now, u)
    assert p.next_due > ts


# ---------------------------------------------------------------- interval

def test_interval_first_sight_runs_at_once():
    spec = job("interval", every="30s")
    now = local(BERLIN, 2024, 5, 6, 12, 0)
    p = plan(spec, JobState(job="j"), now)
    assert p.runs == 1 and p.due == now.timestamp() and p.next_due == now.timestamp() + 30


def test_interval_minutes_and_seconds():
    assert job("interval", interval=30).interval == 1800
    assert job("interval", every="30s").interval == 30
    assert job("interval", every="1h30m").interval == 5400


def test_interval_on_time_keeps_its_grid():
    spec = job("interval", every="10s")
    last = 1_700_000_000.0
    p = plan(spec, JobState(job="j", last_slot=last), at(last + 10.004, BERLIN))
    assert p.runs == 1 and p.due == last + 10 and p.next_due == last + 20


def test_interval_not_due_yet():
    spec = job("interval", every="10s")
    last = 1_700_000_000.0
    p = plan(spec, JobState(job="j", last_slot=last), at(last + 9.5, BERLIN))
    assert p.runs == 0 and p.next_due == last + 10 and p.last_slot == last


@pytest.mark.parametrize("catch_up, runs, anchor", [("once", 1, "now"), ("skip", 0, "grid"), ("all", 10, "now")])
def test_interval_after_downtime(catch_up, runs, anchor):
    spec = job("interval", every="60s", catch_up=catch_up)
    last = 1_700_000_000.0
    now = last + 3600 + 25  # 60 slots missed, the latest 25 s ago
    p = plan(spec, JobState(job="j", last_slot=last), at(now, BERLIN))
    assert p.runs == runs
    assert p.missed == 60
    expected_anchor = now if anchor == "now" else last + 3600
    assert p.last_slot == expected_anchor and p.next_due == expected_anchor + 60


# ---------------------------------------------------------------- random_daily

def test_random_first_draw_uses_the_rest_of_todays_window():
    spec = job("random_daily", after="14:00", before="18:00")
    now = local(NY, 2024, 5, 6, 15, 0)
    p = plan(spec, JobState(job="j"), now, u=0.5)
    assert p.runs == 0 and p.draw_day == "2024-05-06"
    assert at(p.draw_at, NY) == local(NY, 2024, 5, 6, 16, 30, 0, 500000)
    assert p.next_due == p.draw_at


def test_random_draw_after_the_window_is_for_tomorrow():
    spec = job("random_daily", after="14:00", before="18:00")
    p = plan(spec, JobState(job="j"), local(NY, 2024, 5, 6, 19, 0), u=0.0)
    assert p.draw_day == "2024-05-07" and at(p.draw_at, NY) == local(NY, 2024, 5, 7, 14, 0)


def test_random_runs_its_draw_then_draws_tomorrow():
    spec = job("random_daily", after="14:00", before="18:00")
    drawn = local(NY, 2024, 5, 6, 15, 17).timestamp()
    state = JobState(job="j", draw_day="2024-05-06", draw_at=drawn)
    p = plan(spec, state, at(drawn + 0.01, NY), u=0.25)
    assert p.runs == 1 and p.due == drawn and p.last_slot == drawn
    assert p.draw_day == "2024-05-07" and at(p.draw_at, NY) == local(NY, 2024, 5, 7, 15, 0)


def test_random_stored_draw_survives_a_restart():
    """The coin is not tossed again: a restart neither re-draws nor runs twice."""
    spec = job("random_daily", after="14:00", before="18:00")
    first = plan(spec, JobState(job="j"), local(NY, 2024, 5, 6, 9, 0), u=0.9)
    state = JobState(job="j", draw_day=first.draw_day, draw_at=first.draw_at)
    for u in (0.0, 0.3, 0.99):
        again = plan(spec, state, local(NY, 2024, 5, 6, 12, 0), u=u)
        assert (again.draw_at, again.runs) == (first.draw_at, 0)
    ran = plan(spec, state, at(first.draw_at + 0.2, NY), u=0.5)
    state = replace(state, last_slot=ran.last_slot, draw_day=ran.draw_day, draw_at=ran.draw_at)
    later = plan(spec, state, at(first.draw_at + 60, NY), u=0.1)
    assert later.runs == 0 and later.draw_day == "2024-05-07"


@pytest.mark.parametrize("catch_up, runs", [("once", 1), ("skip", 0), ("all", 1)])
def test_random_missed_draw_follows_catch_up(catch_up, runs):
    spec = job("random_daily", after="14:00", before="18:00", catch_up=catch_up)
    drawn = local(NY, 2024, 5, 6, 15, 0).timestamp()
    state = JobState(job="j", draw_day="2024-05-06", draw_at=drawn)
    p = plan(spec, state, local(NY, 2024, 5, 6, 20, 0), u=0.5)
    assert p.runs == runs and p.last_slot == drawn and p.draw_day == "2024-05-07"


@settings(max_examples=80, deadline=None)
@given(tz=st.sampled_from(ZONES), day=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
       hour=st.integers(0, 23), u=st.floats(0, 0.999999))
def test_random_draw_is_inside_the_window(tz, day, hour, u):
    spec = job("random_daily", after="01:30", before="03:00")
    now = datetime.combine(day, datetime.min.time(), tzinfo=tz) + timedelta(hours=hour)
    p = plan(spec, JobState(job="j"), now, u)
    low, high = schedule.random_window(spec, date.fromisoformat(p.draw_day), tz)
    assert low <= p.draw_at <= high and p.draw_at > now.timestamp()


@settings(max_examples=40, deadline=None)
@given(tz=st.sampled_from(ZONES), start=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
       days=st.integers(1, 120), seed=st.integers(0, 2**32))
def test_random_daily_runs_at_most_once_per_day_and_every_day(tz, start, days, seed):
    spec = job("random_daily", after="01:00", before="04:00")
    rng = random.Random(seed)
    state, now = JobState(job="j"), datetime.combine(start, datetime.min.time(), tzinfo=tz)
    end, run_days = (now + timedelta(days=days)).timestamp(), []
    while now.timestamp() < end:
        p = plan(spec, state, now, rng.random())
        run_days += [at(p.due, tz).date()] * p.runs if p.runs else []
        state = replace(state, last_slot=p.last_slot, draw_day=p.draw_day, draw_at=p.draw_at)
        now = at(p.next_due, tz)
    assert len(run_days) == len(set(run_days))
    assert len(run_days) >= days - 1


# ---------------------------------------------------------------- idle

def test_idle_due_after_quiet_and_cooldown():
    spec = job("idle", idle_after="10m", cooldown="1h")
    assert schedule.idle_due(spec, JobState(job="j"), None) is None
    assert schedule.idle_due(spec, JobState(job="j"), 1000.0) == 1600.0
    assert schedule.idle_due(spec, JobState(job="j", last_slot=900.0), 1000.0) == 4500.0


# ---------------------------------------------------------------- exits and retries

def test_always_restarts_at_once_after_a_stable_run():
    spec = job("always", min_uptime="1s")
    decision = schedule.after_exit(spec, attempts=3, uptime=5.0, exit_code=1, now=100.0, u=0.5)
    assert decision == Restart(at=100.0, attempts=0, why="restarting now")


def test_always_backoff_grows_then_gives_up():
    spec = job("always", retries=5, backoff="100ms", backoff_factor=2, backoff_max="60s")
    delays, attempts = [], 0
    for _ in range(4):
        decision = schedule.after_exit(spec, attempts, uptime=0.01, exit_code=1, now=0.0, u=0.0)
        assert isinstance(decision, Restart)
        delays.append(decision.at)
        attempts = decision.attempts
    assert delays == [0.1, 0.2, 0.4, 0.8]
    decision = schedule.after_exit(spec, attempts, uptime=0.01, exit_code=1, now=0.0, u=0.0)
    assert isinstance(decision, GiveUp) and decision.attempts == 5
    assert decision.at == spec.failed_cooldown == 600.0
    assert "crash loop: 5 quick exits" in decision.why


def test_backoff_is_capped_and_jittered_downwards():
    spec = job("always", backoff="1s", backoff_factor=10, backoff_max="60s")
    assert schedule.backoff_delay(spec, 5, 0.0) == 60.0
    assert 45.0 <= schedule.backoff_delay(spec, 5, 0.999) <= 60.0


def test_on_failure_stays_stopped_after_exit_0():
    spec = job("always", restart="on-failure")
    assert isinstance(schedule.after_exit(spec, 0, 0.1, 0, 0.0, 0.5), Done)
    assert isinstance(schedule.after_exit(spec, 0, 0.1, 3, 0.0, 0.5), Restart)


def test_other_jobs_retry_up_to_retries_then_finish():
    spec = job("trigger", retries=2, backoff="1s")
    first = schedule.after_run(spec, 1, Outcome.FAILED, 10.0, 0.0)
    assert first == Retry(at=11.0, attempt=2, why="retry 1/2 in 1 s")
    second = schedule.after_run(spec, 2, Outcome.TIMEOUT, 10.0, 0.0)
    assert isinstance(second, Retry) and second.attempt == 3
    assert schedule.after_run(spec, 3, Outcome.FAILED, 10.0, 0.0) == Done(why="failed after 3 attempts")
    assert schedule.after_run(spec, 1, Outcome.OK, 10.0, 0.0) == Done(why="ok")


def test_a_run_whose_exit_no_one_could_read_is_not_retried():
    """Adopted after a daemon crash, it ran; re-running it could do the work twice."""
    spec = job("trigger", retries=3)
    assert schedule.after_run(spec, 1, Outcome.UNKNOWN, 0.0, 0.0) == Done(why="unknown")
