"""Every scheduling rule, on fixed aware datetimes (DST days included), with injected
clocks that step, suspend and reboot, and as properties."""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from aios import schedule, wallclock
from aios.schedule import Done, GiveUp, Now, Restart, Retry, plan
from aios.jobtable import parse_job
from aios.spec import JobState, Outcome, replace

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
TOKYO = ZoneInfo("Asia/Tokyo")
ZONES = [NY, BERLIN, LORD_HOWE]


def job(kind: str, **fields):
    return parse_job("j", {"type": kind, "command": ["true"], **fields})


def local(tz, *parts) -> datetime:
    return datetime(*parts, tzinfo=tz)


def at(ts: float, tz) -> datetime:
    return datetime.fromtimestamp(ts, tz)


BOOT_A, BOOT_B = "boot-a", "boot-b"


def clocks(wall: datetime, boot: float = 50_000.0, boot_id: str = BOOT_A) -> Now:
    """The engine's clocks; a state without slot_boot is planned on the wall clock."""
    return Now(wall=wall, boot=boot, boot_id=boot_id)


# ---------------------------------------------------------------- daily

def test_daily_first_sight_waits_for_its_time_today():
    spec = job("daily", time="09:30")
    p = plan(spec, JobState(job="j"), clocks(local(NY, 2024, 5, 6, 8, 0)))
    assert p.runs == 0
    assert at(p.next_due, NY) == local(NY, 2024, 5, 6, 9, 30)


def test_daily_first_sight_after_its_time_waits_for_tomorrow():
    """The original checked `hour >= h and minute >= m`, which misses 09:30 at 10:10."""
    spec = job("daily", time="09:30")
    p = plan(spec, JobState(job="j"), clocks(local(NY, 2024, 5, 6, 10, 10)))
    assert p.runs == 0
    assert at(p.next_due, NY) == local(NY, 2024, 5, 7, 9, 30)


def test_daily_runs_when_its_slot_comes():
    spec = job("daily", time="09:30")
    state = JobState(job="j", last_slot=local(NY, 2024, 5, 5, 9, 30).timestamp())
    p = plan(spec, state, clocks(local(NY, 2024, 5, 6, 9, 30, 0, 2000)))
    assert (p.runs, p.missed) == (1, 0)
    assert at(p.due, NY) == local(NY, 2024, 5, 6, 9, 30)
    assert at(p.next_due, NY) == local(NY, 2024, 5, 7, 9, 30)


@pytest.mark.parametrize("catch_up, runs", [("once", 1), ("skip", 0), ("all", 3)])
def test_daily_catch_up_after_three_missed_days(catch_up, runs):
    spec = job("daily", time="09:30", catch_up=catch_up)
    state = JobState(job="j", last_slot=local(NY, 2024, 5, 3, 9, 30).timestamp())
    p = plan(spec, state, clocks(local(NY, 2024, 5, 6, 12, 0)))
    assert p.runs == runs
    assert p.missed == 3
    assert at(p.last_slot, NY) == local(NY, 2024, 5, 6, 9, 30)
    assert at(p.next_due, NY) == local(NY, 2024, 5, 7, 9, 30)


def test_daily_catch_up_all_is_capped():
    spec = job("daily", time="09:30", catch_up="all", catch_up_max=4)
    state = JobState(job="j", last_slot=local(NY, 2024, 1, 1, 9, 30).timestamp())
    p = plan(spec, state, clocks(local(NY, 2024, 5, 6, 12, 0)))
    assert p.runs == 4
    assert at(p.last_slot, NY) == local(NY, 2024, 5, 6, 9, 30)


@pytest.mark.parametrize("tz, day, clock, expected", [
    # spring forward: 02:30 does not exist; the clock passes it when it jumps, once
    (NY, date(2024, 3, 10), "02:30", local(NY, 2024, 3, 10, 3, 0)),
    (BERLIN, date(2024, 3, 31), "02:30", local(BERLIN, 2024, 3, 31, 3, 0)),
    (BERLIN, date(2024, 3, 31), "02:00", local(BERLIN, 2024, 3, 31, 3, 0)),
    (BERLIN, date(2024, 3, 31), "03:00", local(BERLIN, 2024, 3, 31, 3, 0)),
    (LORD_HOWE, date(2024, 10, 6), "02:15", local(LORD_HOWE, 2024, 10, 6, 2, 30)),
    # fall back: 01:30 happens twice; the first one counts
    (NY, date(2024, 11, 3), "01:30", datetime(2024, 11, 3, 5, 30, tzinfo=ZoneInfo("UTC"))),
    (BERLIN, date(2024, 10, 27), "02:30", datetime(2024, 10, 27, 0, 30, tzinfo=ZoneInfo("UTC"))),
])
def test_daily_slot_on_dst_days(tz, day, clock, expected):
    spec = job("daily", time=clock)
    before = datetime.combine(day, datetime.min.time(), tzinfo=tz).timestamp()
    slot = schedule.slot_after(spec, before, tz)
    assert slot == expected.timestamp()
    assert at(schedule.slot_after(spec, slot, tz), tz).date() == day + timedelta(days=1)


def simulate_daily(spec, tz, start: datetime, end: datetime) -> list[datetime]:
    """Run the job every time it comes due, as the engine would, until `end`."""
    state, now, runs = JobState(job="j"), start, []
    while True:
        p = plan(spec, state, clocks(now))
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
                if begin.timestamp() < wallclock.at(start + timedelta(days=i), spec.time, tz) < end.timestamp()]
    assert run_days == expected


@settings(max_examples=300, deadline=None)
@given(tz=st.sampled_from(ZONES), ts=st.floats(1.6e9, 1.9e9), last_offset=st.floats(-5e6, 5e6),
       draw_offset=st.none() | st.floats(-5e6, 5e6), same_boot=st.booleans(), boot_offset=st.floats(-5e6, 5e6),
       kind=st.sampled_from(["daily", "interval", "random_daily", "cron"]), u=st.floats(0, 0.999))
def test_next_due_is_strictly_in_the_future(tz, ts, last_offset, draw_offset, same_boot, boot_offset, kind, u):
    """Whatever the stored state (slots and draws in the past or the future, from this
    boot or another), the plan never counts backwards and never waits for the past."""
    fields = {"daily": {"time": "02:30"}, "interval": {"every": "90s"},
              "random_daily": {"after": "01:00", "before": "03:00"}, "cron": {"cron": "*/7 2 * * *"}}[kind]
    spec = job("daily" if kind == "cron" else kind, **fields)
    draw_at = None if draw_offset is None else ts + draw_offset
    state = JobState(job="j", last_slot=ts - last_offset, slot_boot=1e6 - boot_offset,
                     boot_id=BOOT_A if same_boot else BOOT_B, draw_at=draw_at,
                     draw_day=None if draw_at is None else at(draw_at, tz).date().isoformat())
    now = clocks(at(ts, tz), boot=1e6)
    p = plan(spec, state, now, u)
    assert p.next_due > ts and p.runs >= 0 and p.missed >= 0
    assert p.next_boot is None or p.next_boot > now.boot


# ---------------------------------------------------------------- daily: days, cron, timezone

def test_daily_days_skip_the_other_weekdays():
    spec = job("daily", time="09:00", days=["mon-fri"])
    p = plan(spec, JobState(job="j"), clocks(local(NY, 2024, 5, 10, 10, 0)))  # a Friday
    assert at(p.next_due, NY) == local(NY, 2024, 5, 13, 9, 0)


@pytest.mark.parametrize("catch_up, runs", [("once", 1), ("skip", 0), ("all", 2)])
def test_daily_days_count_only_their_missed_slots(catch_up, runs):
    spec = job("daily", time="09:00", days=["mon-fri"], catch_up=catch_up)
    state = JobState(job="j", last_slot=local(NY, 2024, 5, 10, 9, 0).timestamp())   # Friday's run
    p = plan(spec, state, clocks(local(NY, 2024, 5, 14, 12, 0)))                    # Tuesday noon
    assert (p.runs, p.missed) == (runs, 2)
    assert at(p.last_slot, NY) == local(NY, 2024, 5, 14, 9, 0)


def test_cron_job_runs_on_its_slots():
    spec = job("daily", cron="*/5 * * * *")
    last = local(BERLIN, 2024, 5, 6, 10, 5).timestamp()
    p = plan(spec, JobState(job="j", last_slot=last), clocks(at(last + 300.002, BERLIN)))
    assert (p.runs, p.due, p.missed, p.next_due) == (1, last + 300, 0, last + 600)


@pytest.mark.parametrize("catch_up, runs", [("once", 1), ("skip", 0), ("all", 7)])
def test_cron_job_far_behind_catches_up_to_its_latest_slot(catch_up, runs):
    spec = job("daily", cron="0 9-17 * * mon-fri", catch_up=catch_up, catch_up_max=7)
    state = JobState(job="j", last_slot=local(BERLIN, 2024, 1, 5, 17, 0).timestamp())
    p = plan(spec, state, clocks(local(BERLIN, 2024, 5, 8, 12, 30)))
    assert (p.runs, p.missed) == (runs, 8)                      # counted up to catch_up_max + 1
    assert at(p.last_slot, BERLIN) == local(BERLIN, 2024, 5, 8, 12, 0)
    assert at(p.next_due, BERLIN) == local(BERLIN, 2024, 5, 8, 13, 0)


@pytest.mark.parametrize("spec_fields, now, expected", [
    ({"time": "09:00", "timezone": "Asia/Tokyo"}, local(NY, 2024, 5, 6, 12, 0), local(TOKYO, 2024, 5, 7, 9, 0)),
    ({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, local(NY, 2024, 3, 30, 12, 0),
     local(BERLIN, 2024, 3, 31, 3, 0)),
    ({"time": "02:30", "timezone": "Europe/Berlin"}, local(NY, 2024, 3, 30, 12, 0), local(BERLIN, 2024, 3, 31, 3, 0)),
])
def test_calendar_slots_are_local_to_the_jobs_zone(spec_fields, now, expected):
    p = plan(job("daily", **spec_fields), JobState(job="j"), clocks(now))
    assert p.next_due == expected.timestamp()


def test_random_window_is_local_to_the_jobs_zone():
    spec = job("random_daily", after="14:00", before="18:00", timezone="Asia/Tokyo")
    p = plan(spec, JobState(job="j"), clocks(local(NY, 2024, 5, 6, 12, 0)), u=0.0)   # 01:00 in Tokyo
    assert p.draw_day == "2024-05-07" and at(p.draw_at, TOKYO) == local(TOKYO, 2024, 5, 7, 14)


@settings(max_examples=40, deadline=None)
@given(tz=st.sampled_from(ZONES), text=st.sampled_from(["30 2 * * *", "*/20 1-3 * * *", "0 * * * 0,6", "15 1,2 * * *",
                                                        "0 0 1,15 * mon", "@hourly"]),
       start=st.sampled_from(["2024-03-09", "2024-10-25", "2024-11-01", "2024-04-05", "2024-10-04", "2025-06-01"]),
       days=st.integers(1, 4))
def test_cron_job_runs_every_slot_once(tz, text, start, days):
    """Planned as the engine would, a cron job runs exactly at cron.next_after's instants."""
    spec = job("daily", cron=text)
    begin = datetime.combine(date.fromisoformat(start), datetime.min.time(), tzinfo=tz)
    end = begin.timestamp() + days * 86400
    state, now, ran = JobState(job="j"), begin, []
    while now.timestamp() < end:
        p = plan(spec, state, clocks(now))
        ran += [p.due] * p.runs
        state = replace(state, last_slot=p.last_slot)
        now = at(p.next_due, tz)
    expected, ts = [], begin.timestamp()
    while (ts := next_after_text(text, ts, tz)) < end:
        expected.append(ts)
    assert ran == expected


def next_after_text(text: str, ts: float, tz) -> float:
    from aios import cron
    return cron.next_after(cron.parse(text), ts, tz)


# ---------------------------------------------------------------- interval

def test_interval_first_sight_runs_at_once():
    spec = job("interval", every="30s")
    now = local(BERLIN, 2024, 5, 6, 12, 0)
    p = plan(spec, JobState(job="j"), clocks(now))
    assert p.runs == 1 and p.due == now.timestamp() and p.next_due == now.timestamp() + 30


def test_interval_minutes_and_seconds():
    assert job("interval", interval=30).interval == 1800
    assert job("interval", every="30s").interval == 30
    assert job("interval", every="1h30m").interval == 5400


def test_interval_on_time_keeps_its_grid():
    spec = job("interval", every="10s")
    last = 1_700_000_000.0
    p = plan(spec, JobState(job="j", last_slot=last), clocks(at(last + 10.004, BERLIN)))
    assert p.runs == 1 and p.due == last + 10 and p.next_due == last + 20


def test_interval_not_due_yet():
    spec = job("interval", every="10s")
    last = 1_700_000_000.0
    p = plan(spec, JobState(job="j", last_slot=last), clocks(at(last + 9.5, BERLIN)))
    assert p.runs == 0 and p.next_due == last + 10 and p.last_slot == last


@pytest.mark.parametrize("catch_up, runs, anchor", [("once", 1, "now"), ("skip", 0, "grid"), ("all", 10, "now")])
def test_interval_after_downtime(catch_up, runs, anchor):
    spec = job("interval", every="60s", catch_up=catch_up)
    last = 1_700_000_000.0
    now = last + 3600 + 25  # 60 slots missed, the latest 25 s ago
    p = plan(spec, JobState(job="j", last_slot=last), clocks(at(now, BERLIN)))
    assert p.runs == runs
    assert p.missed == 60
    expected_anchor = now if anchor == "now" else last + 3600
    assert p.last_slot == expected_anchor and p.next_due == expected_anchor + 60


# ---------------------------------------------------------------- random_daily

def test_random_first_draw_uses_the_rest_of_todays_window():
    spec = job("random_daily", after="14:00", before="18:00")
    now = local(NY, 2024, 5, 6, 15, 0)
    p = plan(spec, JobState(job="j"), clocks(now), u=0.5)
    assert p.runs == 0 and p.draw_day == "2024-05-06"
    assert at(p.draw_at, NY) == local(NY, 2024, 5, 6, 16, 30, 0, 500000)
    assert p.next_due == p.draw_at


def test_random_draw_after_the_window_is_for_tomorrow():
    spec = job("random_daily", after="14:00", before="18:00")
    p = plan(spec, JobState(job="j"), clocks(local(NY, 2024, 5, 6, 19, 0)), u=0.0)
    assert p.draw_day == "2024-05-07" and at(p.draw_at, NY) == local(NY, 2024, 5, 7, 14, 0)


def test_random_runs_its_draw_then_draws_tomorrow():
    spec = job("random_daily", after="14:00", before="18:00")
    drawn = local(NY, 2024, 5, 6, 15, 17).timestamp()
    state = JobState(job="j", draw_day="2024-05-06", draw_at=drawn)
    p = plan(spec, state, clocks(at(drawn + 0.01, NY)), u=0.25)
    assert p.runs == 1 and p.due == drawn and p.last_slot == drawn
    assert p.draw_day == "2024-05-07" and at(p.draw_at, NY) == local(NY, 2024, 5, 7, 15, 0)


def test_random_stored_draw_survives_a_restart():
    """The coin is not tossed again: a restart neither re-draws nor runs twice."""
    spec = job("random_daily", after="14:00", before="18:00")
    first = plan(spec, JobState(job="j"), clocks(local(NY, 2024, 5, 6, 9, 0)), u=0.9)
    state = JobState(job="j", draw_day=first.draw_day, draw_at=first.draw_at)
    for u in (0.0, 0.3, 0.99):
        again = plan(spec, state, clocks(local(NY, 2024, 5, 6, 12, 0)), u=u)
        assert (again.draw_at, again.runs) == (first.draw_at, 0)
    ran = plan(spec, state, clocks(at(first.draw_at + 0.2, NY)), u=0.5)
    state = replace(state, last_slot=ran.last_slot, draw_day=ran.draw_day, draw_at=ran.draw_at)
    later = plan(spec, state, clocks(at(first.draw_at + 60, NY)), u=0.1)
    assert later.runs == 0 and later.draw_day == "2024-05-07"


@pytest.mark.parametrize("catch_up, runs", [("once", 1), ("skip", 0), ("all", 1)])
def test_random_missed_draw_follows_catch_up(catch_up, runs):
    spec = job("random_daily", after="14:00", before="18:00", catch_up=catch_up)
    drawn = local(NY, 2024, 5, 6, 15, 0).timestamp()
    state = JobState(job="j", draw_day="2024-05-06", draw_at=drawn)
    p = plan(spec, state, clocks(local(NY, 2024, 5, 6, 20, 0)), u=0.5)
    assert p.runs == runs and p.last_slot == drawn and p.draw_day == "2024-05-07"


@settings(max_examples=80, deadline=None)
@given(tz=st.sampled_from(ZONES), day=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
       hour=st.integers(0, 23), u=st.floats(0, 0.999999))
def test_random_draw_is_inside_the_window(tz, day, hour, u):
    spec = job("random_daily", after="01:30", before="03:00")
    now = datetime.combine(day, datetime.min.time(), tzinfo=tz) + timedelta(hours=hour)
    p = plan(spec, JobState(job="j"), clocks(now), u)
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
        p = plan(spec, state, clocks(now), rng.random())
        run_days += [at(p.due, tz).date()] * p.runs if p.runs else []
        state = replace(state, last_slot=p.last_slot, draw_day=p.draw_day, draw_at=p.draw_at)
        now = at(p.next_due, tz)
    assert len(run_days) == len(set(run_days))
    assert len(run_days) >= days - 1


# ---------------------------------------------------------------- time faults: interval
# The state remembers its last slot on both clocks; `real` seconds later the wall clock
# reads `real + step` (a step of the wall clock by NTP or a user), the boot clock `real`.

WALL0, BOOT0 = local(BERLIN, 2024, 5, 6, 12, 0).timestamp(), 9_000.0
STEPS = [5, -5, 3600, -3600, 3 * 86400, -3 * 86400]


def ran_at_wall0(**fields) -> JobState:
    return JobState(job="j", last_slot=WALL0, slot_boot=BOOT0, boot_id=BOOT_A, **fields)


def later(real: float, step: float = 0.0, boot_id: str = BOOT_A, tz=BERLIN, boot: float | None = None) -> Now:
    return Now(wall=at(WALL0 + real + step, tz), boot=BOOT0 + real if boot is None else boot, boot_id=boot_id)


@pytest.mark.parametrize("catch_up", ["once", "skip", "all"])
@pytest.mark.parametrize("step", STEPS)
def test_interval_rhythm_ignores_wall_steps_within_a_boot(step, catch_up):
    spec = job("interval", every="30m", catch_up=catch_up)
    before = plan(spec, ran_at_wall0(), later(600, step))
    assert (before.runs, before.missed, before.slot_boot, before.next_boot) == (0, 0, BOOT0, BOOT0 + 1800)
    assert before.last_slot == WALL0
    assert before.next_due == pytest.approx(WALL0 + step + 1800)
    due = plan(spec, ran_at_wall0(), later(1800, step))
    assert (due.runs, due.missed, due.slot_boot, due.next_boot) == (1, 0, BOOT0 + 1800, BOOT0 + 3600)
    assert due.due == pytest.approx(WALL0 + step + 1800)


@pytest.mark.parametrize("catch_up, runs", [("once", 1), ("skip", 0), ("all", 4)])
def test_interval_counts_suspended_time_as_elapsed(catch_up, runs):
    """CLOCK_BOOTTIME counts suspend: 2 h 10 min asleep is four 30-minute slots owed."""
    spec = job("interval", every="30m", catch_up=catch_up)
    p = plan(spec, ran_at_wall0(), later(7800))
    assert (p.runs, p.missed) == (runs, 4)
    assert p.next_boot == (BOOT0 + 7800 + 1800 if runs else BOOT0 + 7200 + 1800)


@pytest.mark.parametrize("catch_up", ["once", "skip", "all"])
def test_interval_after_a_reboot_continues_its_rhythm_on_the_wall_clock(catch_up):
    """10 minutes after the last slot the machine rebooted; 60 s into the new boot."""
    spec = job("interval", every="30m", catch_up=catch_up)
    p = plan(spec, ran_at_wall0(), later(660, boot_id=BOOT_B, boot=60.0))
    assert (p.runs, p.missed, p.last_slot) == (0, 0, WALL0)
    assert p.slot_boot == 60.0 - 660 and p.next_boot == 60.0 - 660 + 1800
    assert p.next_due == WALL0 + 1800


@pytest.mark.parametrize("catch_up", ["once", "skip", "all"])
@pytest.mark.parametrize("step", [-5, -3600, -3 * 86400])
def test_interval_slot_stored_in_the_future_anchors_at_now(step, catch_up):
    """After a reboot the wall clock is behind the stored slot (the board had a wrong date,
    or the clock went back): no run, no negative count, the rhythm starts at now."""
    spec = job("interval", every="30m", catch_up=catch_up)
    now = later(0, step, boot_id=BOOT_B, boot=30.0)
    p = plan(spec, ran_at_wall0(), now)
    assert (p.runs, p.missed) == (0, 0)
    assert (p.last_slot, p.slot_boot, p.next_boot) == (now.wall.timestamp(), 30.0, 1830.0)


@pytest.mark.parametrize("step", [3600, 3 * 86400])
def test_interval_after_a_reboot_with_the_clock_ahead_follows_catch_up(step):
    """Across a reboot a forward step cannot be told from downtime: catch_up decides,
    capped by catch_up_max, never a burst beyond it."""
    spec = job("interval", every="30m", catch_up="all", catch_up_max=5)
    p = plan(spec, ran_at_wall0(), later(600, step, boot_id=BOOT_B, boot=10.0))
    assert p.runs == min(5, (600 + step) // 1800) and p.missed == (600 + step) // 1800


# ---------------------------------------------------------------- time faults: daily

def daily_ran_today(clock: str = "12:00", **fields) -> tuple:
    return job("daily", time=clock, **fields), ran_at_wall0()


@pytest.mark.parametrize("catch_up", ["once", "skip", "all"])
@pytest.mark.parametrize("step", [5, -5, 3600, -3600, 3 * 86400, 20 * 3600, -20 * 3600])
def test_daily_wall_steps_within_a_boot_neither_repeat_nor_owe_a_day(step, catch_up):
    """Ran at 12:00; half an hour later the clock is stepped. A forward step is not
    downtime (nothing owed), a step back of seconds or hours never runs 12:00 again."""
    spec, state = daily_ran_today(catch_up=catch_up)
    p = plan(spec, state, later(1800, step))
    assert (p.runs, p.missed) == (0, 0)
    now_wall = WALL0 + 1800 + step
    expected = schedule.slot_after(spec, max(now_wall, WALL0), BERLIN)
    assert p.next_due == expected > now_wall


@pytest.mark.parametrize("step, next_due", [
    (-30 * 3600, local(BERLIN, 2024, 5, 7, 12, 0)),      # to yesterday 06:30: hold (no whole day between)
    (-50 * 3600, local(BERLIN, 2024, 5, 4, 12, 0)),      # to 10:30 two days back: a correction
    (-3 * 86400, local(BERLIN, 2024, 5, 4, 12, 0)),
])
def test_daily_step_back_of_days_reanchors_instead_of_stalling(step, next_due):
    """Ran at 12:00 on 2024-05-06; half an hour later the clock goes back."""
    spec, state = daily_ran_today()
    now = later(1800, step)
    p = plan(spec, state, now)
    held = next_due > at(WALL0, BERLIN)
    assert p.runs == 0
    assert (p.last_slot, p.slot_boot) == ((WALL0, BOOT0) if held else (now.wall.timestamp(), now.boot))
    assert at(p.next_due, BERLIN) == next_due


@pytest.mark.parametrize("boot_id", [BOOT_A, BOOT_B])
def test_daily_step_back_across_midnight_does_not_run_the_day_twice(boot_id):
    """Ran at 00:10; the clock goes back 30 minutes to 23:40 the day before."""
    spec = job("daily", time="00:10")
    ran = local(BERLIN, 2024, 5, 7, 0, 10).timestamp()
    state = JobState(job="j", last_slot=ran, slot_boot=BOOT0, boot_id=BOOT_A)
    p = plan(spec, state, Now(wall=at(ran - 1800, BERLIN), boot=BOOT0 + 1, boot_id=boot_id))
    assert (p.runs, p.last_slot) == (0, ran)
    assert at(p.next_due, BERLIN) == local(BERLIN, 2024, 5, 8, 0, 10)


def test_daily_slot_on_a_later_day_after_reboot_reanchors_at_now():
    """A board booted with a date five days ahead, ran its job, rebooted, and the date
    was corrected: the job runs today at its time, not in five days."""
    spec = job("daily", time="09:30")
    state = JobState(job="j", last_slot=local(BERLIN, 2024, 5, 11, 9, 30).timestamp())
    now = local(BERLIN, 2024, 5, 6, 8, 0)
    p = plan(spec, state, clocks(now, boot=40.0, boot_id=BOOT_B))
    assert (p.runs, p.last_slot, p.slot_boot) == (0, now.timestamp(), 40.0)
    assert at(p.next_due, BERLIN) == local(BERLIN, 2024, 5, 6, 9, 30)


@pytest.mark.parametrize("catch_up, runs", [("once", 1), ("skip", 0), ("all", 3)])
def test_daily_forward_step_across_a_reboot_follows_catch_up(catch_up, runs):
    spec, state = daily_ran_today(catch_up=catch_up)
    p = plan(spec, state, later(1800, 3 * 86400, boot_id=BOOT_B, boot=5.0))
    assert (p.runs, p.missed) == (runs, 3)


def test_daily_forward_step_over_its_time_owes_that_slot():
    """12:00 ran yesterday; at 11:50 the clock jumps an hour ahead: 12:00 is passed and
    due (what cron does for a fixed-time job skipped by a jump of less than 3 hours)."""
    spec = job("daily", time="12:00")
    state = JobState(job="j", last_slot=WALL0 - 86400, slot_boot=BOOT0 - 86400, boot_id=BOOT_A)
    p = plan(spec, state, later(-600, 3600))
    assert (p.runs, p.due, p.missed) == (1, WALL0, 1)


@pytest.mark.parametrize("boot_id", [BOOT_A, BOOT_B])
def test_cron_wildcard_job_follows_the_clock_back_and_fixed_job_holds(boot_id):
    """cronie's rules for a step back: '*/5 * * * *' runs again by the wall clock; a job
    at a fixed time does not run its time twice."""
    ran = local(BERLIN, 2024, 5, 6, 10, 5).timestamp()
    state = JobState(job="j", last_slot=ran, slot_boot=BOOT0, boot_id=BOOT_A)
    now = Now(wall=at(ran + 60 - 3600, BERLIN), boot=BOOT0 + 60, boot_id=boot_id)
    wild = plan(job("daily", cron="*/5 * * * *"), state, now)
    assert (wild.runs, wild.last_slot) == (0, now.wall.timestamp())
    assert at(wild.next_due, BERLIN) == local(BERLIN, 2024, 5, 6, 9, 10)
    fixed = plan(job("daily", cron="5 10 * * *"), state, now)
    assert (fixed.runs, fixed.last_slot) == (0, ran)
    assert at(fixed.next_due, BERLIN) == local(BERLIN, 2024, 5, 7, 10, 5)


def test_cron_forward_step_within_a_boot_owes_only_what_real_time_covers():
    """A '*/5' job ran at 10:05; a minute later the clock jumps 3 hours: nothing is owed
    (cronie runs wildcard jobs for the current minute only), next at 13:10."""
    ran = local(BERLIN, 2024, 5, 6, 10, 5).timestamp()
    state = JobState(job="j", last_slot=ran, slot_boot=BOOT0, boot_id=BOOT_A)
    p = plan(job("daily", cron="*/5 * * * *", catch_up="all"), state,
             Now(wall=at(ran + 60 + 3 * 3600, BERLIN), boot=BOOT0 + 60, boot_id=BOOT_A))
    assert (p.runs, p.missed) == (0, 0)
    assert at(p.next_due, BERLIN) == local(BERLIN, 2024, 5, 6, 13, 10)


# ---------------------------------------------------------------- time faults: random_daily

def random_job(**fields):
    return job("random_daily", after="14:00", before="18:00", **fields)


def settle(spec, state: JobState, now: Now, u: float) -> tuple:
    p = plan(spec, state, now, u)
    return p, replace(state, last_slot=p.last_slot, slot_boot=p.slot_boot, boot_id=now.boot_id,
                      draw_day=p.draw_day, draw_at=p.draw_at)


def test_random_run_on_a_later_day_is_a_correction_and_draws_once_for_today():
    """The bug: a last run stored on a later day (a wrong date, then corrected) made every
    wake-up draw again, and the job never ran until the old date came round."""
    spec = random_job()
    ran = local(NY, 2024, 5, 11, 15, 0).timestamp()
    state = JobState(job="j", last_slot=ran, draw_day="2024-05-12",
                     draw_at=local(NY, 2024, 5, 12, 16, 0).timestamp())
    first, state = settle(spec, state, clocks(local(NY, 2024, 5, 6, 9, 0), boot_id=BOOT_B), 0.25)
    assert first.draw_day == "2024-05-06" and at(first.draw_at, NY) == local(NY, 2024, 5, 6, 15, 0)
    for hour, u in [(10, 0.9), (11, 0.1), (13, 0.7)]:
        again, state = settle(spec, state, clocks(local(NY, 2024, 5, 6, hour, 0), boot_id=BOOT_B), u)
        assert (again.draw_day, again.draw_at, again.runs) == (first.draw_day, first.draw_at, 0)
    ran_now, state = settle(spec, state, clocks(at(first.draw_at, NY), boot_id=BOOT_B), 0.5)
    assert (ran_now.runs, ran_now.due) == (1, first.draw_at)
    assert ran_now.draw_day == "2024-05-07"


def test_random_draw_for_a_later_day_than_due_is_redrawn_for_today():
    spec = random_job()
    state = JobState(job="j", draw_day="2024-05-09", draw_at=local(NY, 2024, 5, 9, 15, 0).timestamp())
    p = plan(spec, state, clocks(local(NY, 2024, 5, 6, 9, 0)), 0.5)
    assert p.draw_day == "2024-05-06" and at(p.draw_at, NY) == local(NY, 2024, 5, 6, 16, 0)


@pytest.mark.parametrize("boot_id", [BOOT_A, BOOT_B])
@pytest.mark.parametrize("step", [-5, -3600, -6 * 3600])
def test_random_step_back_after_todays_run_neither_runs_nor_draws_again_today(step, boot_id):
    spec = random_job()
    ran = local(NY, 2024, 5, 6, 15, 0).timestamp()
    state = JobState(job="j", last_slot=ran, slot_boot=BOOT0, boot_id=BOOT_A, draw_day="2024-05-07",
                     draw_at=local(NY, 2024, 5, 7, 17, 0).timestamp())
    p = plan(spec, state, Now(wall=at(ran + 60 + step, NY), boot=BOOT0 + 60, boot_id=boot_id), 0.5)
    assert (p.runs, p.draw_day, p.draw_at, p.last_slot) == (0, "2024-05-07", state.draw_at, ran)


def test_random_step_back_of_hours_across_midnight_neither_runs_nor_draws_a_day_twice():
    """Found by the property below: ran at 13:56; the clock goes back 18 hours to 19:59:58
    the day before, while that day's window (13:00-20:00) is still open."""
    spec = job("random_daily", after="13:00", before="20:00")
    ran = local(NY, 2024, 5, 13, 13, 56).timestamp()
    state = JobState(job="j", last_slot=ran, slot_boot=BOOT0, boot_id=BOOT_A, draw_day="2024-05-14",
                     draw_at=local(NY, 2024, 5, 14, 18, 55).timestamp())
    p = plan(spec, state, Now(wall=at(ran - 18 * 3600 + 2, NY), boot=BOOT0 + 2, boot_id=BOOT_A), 0.5)
    assert (p.runs, p.last_slot, p.draw_day, p.draw_at) == (0, ran, "2024-05-14", state.draw_at)


@pytest.mark.parametrize("tz, day, after, before, jump", [
    (NY, date(2024, 3, 10), "02:10", "02:50", local(NY, 2024, 3, 10, 3, 0)),
    (BERLIN, date(2024, 3, 31), "02:00", "02:59", local(BERLIN, 2024, 3, 31, 3, 0)),
    (LORD_HOWE, date(2024, 10, 6), "02:05", "02:25", local(LORD_HOWE, 2024, 10, 6, 2, 30)),
])
@pytest.mark.parametrize("u", [0.0, 0.5, 0.999])
def test_random_window_inside_the_gap_is_the_moment_of_the_jump(tz, day, after, before, jump, u):
    """A window the clock skips entirely is passed at the jump: the job runs then."""
    spec = job("random_daily", after=after, before=before)
    p = plan(spec, JobState(job="j"), clocks(datetime.combine(day, datetime.min.time(), tzinfo=tz)), u)
    assert p.draw_day == day.isoformat() and p.draw_at == jump.timestamp()


@settings(max_examples=150, deadline=None)
@given(tz=st.sampled_from(ZONES), year=st.integers(2020, 2030), start=st.integers(0, 23 * 60),
       length=st.integers(1, 6 * 60), u=st.floats(0, 0.999999))
def test_random_window_across_the_gap_never_draws_outside_it(tz, year, start, length, u):
    """Whatever window, on the spring-forward day: the draw comes neither before the clock
    passes `after` nor after it passes `before`."""
    spring = {NY: date(year, 3, 8), BERLIN: date(year, 3, 25), LORD_HOWE: date(year, 10, 1)}[tz]
    day = spring + timedelta(days=(6 - spring.weekday()) % 7)  # the first Sunday on or after
    end = min(start + length, 24 * 60 - 1)
    if end <= start:
        return
    after, before = f"{start // 60:02}:{start % 60:02}", f"{end // 60:02}:{end % 60:02}"
    spec = job("random_daily", after=after, before=before)
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=tz)
    p = plan(spec, JobState(job="j"), clocks(midnight), u)
    assert p.draw_day == day.isoformat()
    assert wallclock.at(day, spec.after, tz) <= p.draw_at <= wallclock.at(day, spec.before, tz)
    shown = at(p.draw_at, tz)
    assert shown.date() == day
    if shown.utcoffset() == midnight.utcoffset():  # drawn before the jump: the clock read it
        assert spec.after <= shown.time().replace(tzinfo=None) <= spec.before


# ---------------------------------------------------------------- time faults: properties
# An engine-like loop over injected clocks: real time advances, the wall clock steps, the
# machine suspends or reboots; the job is planned after every event and at every wake-up.

class Machine:
    def __init__(self, start: float):
        self.real, self.wall_ahead, self.boot_start, self.boots = start, 0.0, start - 1000.0, 0

    def now(self, tz) -> Now:
        return Now(wall=at(self.real + self.wall_ahead, tz), boot=self.real - self.boot_start,
                   boot_id=f"boot-{self.boots}")

    def reboot(self) -> None:
        self.boots, self.boot_start = self.boots + 1, self.real - 30.0


def drive(spec, tz, events, machine: Machine, u_seed: int) -> list[tuple[Now, schedule.Plan, float]]:
    """Run the job through `events`; return every plan with its clocks and real time."""
    rng, state, seen = random.Random(u_seed), JobState(job="j"), []

    def settle_now():
        nonlocal state
        now = machine.now(tz)
        p = plan(spec, state, now, rng.random())
        seen.append((now, p, machine.real))
        state = replace(state, last_slot=p.last_slot, slot_boot=p.slot_boot, boot_id=now.boot_id,
                        draw_day=p.draw_day or state.draw_day, draw_at=p.draw_at or state.draw_at)
        return p

    for kind, amount in events:
        if kind == "step":
            machine.wall_ahead += amount
        elif kind == "reboot":
            machine.reboot()
        end = machine.real + (amount if kind in ("run", "suspend") else 0.0)
        while True:
            p = settle_now()
            wake = p.next_due - machine.wall_ahead  # the engine wakes at the wall time (real clock here)
            if wake > end:
                break
            machine.real = max(machine.real, wake)
        machine.real = end
    settle_now()
    return seen


_STEPS = st.sampled_from([5.0, -5.0, 3600.0, -3600.0, 3 * 86400.0, -3 * 86400.0, 30 * 86400.0, -30 * 86400.0])
_EVENT = st.one_of(
    st.tuples(st.just("run"), st.floats(60, 3 * 86400)),
    st.tuples(st.just("suspend"), st.floats(60, 2 * 86400)),
    st.tuples(st.just("step"), _STEPS), st.tuples(st.just("step"), st.floats(-12 * 3600, 12 * 3600)),
    st.tuples(st.just("reboot"), st.just(0.0)))


@settings(max_examples=300, deadline=None)
@given(tz=st.sampled_from(ZONES), start=st.floats(1.6e9, 1.9e9),
       kind=st.sampled_from(["daily", "random_daily", "interval", "cron", "cron_wild"]),
       catch_up=st.sampled_from(["once", "skip", "all"]), events=st.lists(_EVENT, max_size=8),
       seed=st.integers(0, 2 ** 32))
def test_clock_faults_never_burst_stall_or_count_backwards(tz, start, kind, catch_up, events, seed):
    fields = {"daily": {"time": "02:30"}, "random_daily": {"after": "01:00", "before": "04:00"},
              "interval": {"every": "45m"}, "cron": {"cron": "30 2 * * 1-5"},
              "cron_wild": {"cron": "*/40 * * * *"}}[kind]
    spec = job(kind.replace("cron_wild", "daily").replace("cron", "daily"), catch_up=catch_up, catch_up_max=3, **fields)
    machine = Machine(start)
    faults_end = machine.real + sum(amount for kind, amount in events if kind in ("run", "suspend"))
    seen = drive(spec, tz, events + [("run", 7 * 86400)], machine, seed)
    for now, p, _ in seen:
        assert p.missed >= 0 and 0 <= p.runs <= 3
        assert p.next_due > now.wall.timestamp()
        assert p.next_boot is None or p.next_boot > now.boot
    # a week without faults: at most a step back of 3 days held, then a weekend, then a run
    assert any(p.runs for _, p, real in seen if real > faults_end), "stalled"


@settings(max_examples=80, deadline=None)
@given(tz=st.sampled_from(ZONES), start=st.floats(1.6e9, 1.9e9),
       kind=st.sampled_from(["daily", "random_daily", "cron"]),
       steps=st.lists(st.tuples(st.floats(60, 2 * 86400), st.floats(-12 * 3600, 12 * 3600)), max_size=6),
       reboot=st.booleans(), seed=st.integers(0, 2 ** 32))
def test_steps_of_hours_never_run_a_calendar_day_twice(tz, start, kind, steps, reboot, seed):
    fields = {"daily": {"time": "23:50"}, "random_daily": {"after": "13:00", "before": "20:00"},
              "cron": {"cron": "50 23 * * *"}}[kind]
    spec = job("daily" if kind == "cron" else kind, **fields)
    events = [e for real, step in steps for e in [("run", real), ("step", step)]]
    if reboot:
        events.insert(len(events) // 2, ("reboot", 0.0))
    seen = drive(spec, tz, events + [("run", 2 * 86400)], Machine(start), seed)
    days = [at(p.due, tz).date() for _, p, _ in seen for _ in range(p.runs)]
    assert len(days) == len(set(days)), "a calendar day ran twice"


# ---------------------------------------------------------------- idle

def test_idle_due_after_quiet_and_cooldown():
    spec = job("idle", idle_after="10m", cooldown="1h")
    assert schedule.idle_due(spec, JobState(job="j"), None) is None
    assert schedule.idle_due(spec, JobState(job="j"), 1000.0) == 1600.0
    assert schedule.idle_due(spec, JobState(job="j", last_slot=900.0), 1000.0) == 4500.0


@pytest.mark.parametrize("state, due", [
    (JobState(job="j"), 1600.0),
    # same boot: the cooldown counts on the boot clock, whatever the wall clock did since
    (JobState(job="j", last_slot=WALL0 + 86400 * 3, slot_boot=900.0, boot_id=BOOT_A), 4500.0),
    # another boot: the stored wall time is converted to this boot's clock
    (JobState(job="j", last_slot=WALL0 - 100.0, slot_boot=900.0, boot_id=BOOT_B), 4500.0),
    # another boot, stored in the future (a corrected clock): the cooldown starts now
    (JobState(job="j", last_slot=WALL0 + 86400 * 3, slot_boot=900.0, boot_id=BOOT_B), 4600.0),
])
def test_idle_due_on_the_boot_clock(state, due):
    spec = job("idle", idle_after="10m", cooldown="1h")
    assert schedule.idle_due(spec, state, 1000.0, Now(wall=at(WALL0, BERLIN), boot=1000.0, boot_id=BOOT_A)) == due


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
