"""Every scheduling rule of AIOS, as pure functions of (spec, state, now).

No clock, no I/O, no randomness of its own. `now` is a `Now`: the three clocks the
engine reads once per loop turn. Random draws take `u` in [0, 1). Functions return
decisions (`Plan`, `Restart`, `GiveUp`, `Retry`, `Done`) that the engine carries out.

Two kinds of time, and what a clock step does to each:
- Interval jobs ("every 30 min") are measured on CLOCK_BOOTTIME, not CLOCK_MONOTONIC:
  BOOTTIME keeps counting while the machine is suspended, so "every 30 min" means 30
  minutes of real elapsed time, and a laptop that slept through a slot runs it on wake-up
  (MONOTONIC stops in suspend and would push every slot back by the time asleep). Boot
  clock readings compare only within one boot (`boot_id`); across a reboot the stored
  wall-clock slot is used instead, clamped: never a negative count, never more runs than
  catch_up allows, and a slot stored in the future (the clock was wrong, then corrected)
  anchors the rhythm at now without a run, because the last run may have been seconds
  ago. Wall-clock steps within one boot never change an interval job's rhythm.
- Calendar jobs (daily: `time` on `days`, or every instant `cron` fires; random_daily)
  follow the wall clock of their zone (`timezone`, else the daemon's). Within one boot
  the last slot is also placed on today's wall clock by the real time elapsed since it
  (boot clock), and the later of the two counts: a clock stepped forward is not downtime
  (only slots the real elapsed time covers are owed). A clock behind the last slot holds
  it (no slot runs twice, so a step back of minutes or hours never runs a day twice),
  unless a whole calendar day lies between now and the last slot: then the clock was
  corrected by days (a board booted with a wrong date) and the job re-anchors at now
  instead of stalling until the old date comes round. A cron job with '*' in its minute
  or hour field follows the wall clock back at once, as cronie does.

Imports only aios.spec, aios.cron and aios.wallclock.
"""
from __future__ import annotations

from datetime import date, datetime

from . import cron, wallclock
from .spec import JobSpec, JobState, JobType, Outcome, record

# A slot started later than this is "missed": its job's catch_up policy decides.
MISSED_AFTER = 1.0
# A slot this close ahead counts as due: timers and clocks disagree by microseconds.
EARLY = 0.001


@record
class Now:
    """The engine's clocks, read once per loop turn."""

    wall: datetime      # aware, in the daemon's local zone (a job may have its own zone)
    boot: float         # CLOCK_BOOTTIME seconds (monotonic, counts suspend; per boot)
    boot_id: str        # /proc/sys/kernel/random/boot_id: boot values compare only within one boot


@record
class Plan:
    """What a scheduled job should do now: start `runs` runs (for slot `due`), then
    remember `last_slot` (wall, epoch seconds) with `slot_boot` (the same moment on the
    boot clock; store it with `now.boot_id`), and wait for `next_due` (wall) or, for an
    interval job, `next_boot` (boot clock; None for calendar jobs, which wake at
    `next_due` and are re-checked at least every minute)."""

    runs: int = 0
    due: float | None = None
    last_slot: float | None = None
    slot_boot: float | None = None
    next_due: float | None = None
    next_boot: float | None = None
    missed: int = 0
    draw_day: str | None = None
    draw_at: float | None = None


@record
class Restart:
    at: float
    attempts: int
    why: str


@record
class GiveUp:
    at: float          # when to probe again
    attempts: int
    why: str


@record
class Retry:
    at: float
    attempt: int
    why: str


@record
class Done:
    why: str


def plan(spec: JobSpec, state: JobState, now: Now, u: float = 0.5) -> Plan:
    """What a daily, interval or random_daily job does at `now`. A job never seen before
    anchors at `now` (an interval job runs at once, a daily one waits for its time)."""
    if spec.type is JobType.INTERVAL:
        return _plan_interval(spec, state, now)
    if spec.type is JobType.RANDOM_DAILY:
        return _plan_random(spec, state, now, u)
    return _plan_calendar(spec, state, now)


# ---------------------------------------------------------------- the two clocks

def _same_boot(state: JobState, now: Now) -> bool:
    return state.slot_boot is not None and state.boot_id == now.boot_id


def _boot_of(now: Now, wall: float) -> float:
    """The boot-clock reading at which the wall clock shows `wall`, if it is not stepped."""
    return now.boot - (now.wall.timestamp() - wall)


def _wall_of(now: Now, boot: float) -> float:
    return now.wall.timestamp() + (boot - now.boot)


def _slot_boot(state: JobState, now: Now, last: float) -> float:
    """The boot-clock moment of slot `last` kept from `state`, on this boot's clock."""
    return state.slot_boot if _same_boot(state, now) else _boot_of(now, last)


def last_start(state: JobState, now: Now) -> float | None:
    """The last slot on this boot's clock; a wall time stored in another boot is
    converted, and one in the future (a corrected clock) counts as now."""
    if state.last_slot is None:
        return None
    if _same_boot(state, now):
        return state.slot_boot
    return min(_boot_of(now, state.last_slot), now.boot)


# ---------------------------------------------------------------- interval: the boot clock

def _plan_interval(spec: JobSpec, state: JobState, now: Now) -> Plan:
    if state.last_slot is None:
        return _interval_anchor(spec, now, runs=1)
    anchor = _slot_boot(state, now, state.last_slot)
    if anchor > now.boot + EARLY:  # stored in the future: the clock was corrected
        return _interval_anchor(spec, now, runs=0)
    count = int((now.boot + EARLY - anchor) // spec.interval)
    if not count:
        nxt = anchor + spec.interval
        return Plan(last_slot=state.last_slot, slot_boot=anchor, next_boot=nxt, next_due=_wall_of(now, nxt))
    latest = anchor + spec.interval * count
    late = now.boot - latest > MISSED_AFTER
    runs = _runs_for(spec, count, late)
    if late and runs:
        latest = now.boot  # "measured from the last start": a late start re-anchors the rhythm
    due, nxt = _wall_of(now, latest), latest + spec.interval
    return Plan(runs=runs, due=due, last_slot=due, slot_boot=latest, next_boot=nxt,
                next_due=_wall_of(now, nxt), missed=count - (0 if late else 1))


def _interval_anchor(spec: JobSpec, now: Now, runs: int) -> Plan:
    wall = now.wall.timestamp()
    return Plan(runs=runs, due=wall if runs else None, last_slot=wall, slot_boot=now.boot,
                next_boot=now.boot + spec.interval, next_due=wall + spec.interval)


def _runs_for(spec: JobSpec, missed: int, late: bool) -> int:
    """Runs owed for `missed` slots whose latest is `late` (or on time)."""
    if spec.catch_up == "all":
        return min(missed, spec.catch_up_max)
    if late and spec.catch_up == "skip":
        return 0
    return 1


# ---------------------------------------------------------------- calendar slots

def job_zone(spec: JobSpec, now: Now):
    """The zone a calendar job's times are local to: its own, else the daemon's."""
    if spec.timezone is None:
        return now.wall.tzinfo
    from zoneinfo import ZoneInfo  # cached by zoneinfo: one load per zone

    return ZoneInfo(spec.timezone)


def slot_after(spec: JobSpec, ts: float, tz) -> float:
    """The first slot of a daily job strictly after instant `ts`: the next instant its
    cron expression fires, or its time on the next of its days."""
    if spec.cron is not None:
        return cron.next_after(spec.cron, ts, tz)
    day = wallclock.local_date(ts, tz)
    while True:
        if spec.days is None or day.weekday() in spec.days:
            slot = wallclock.at(day, spec.time, tz)
            if slot > ts:
                return slot
        day = _next_day(day)


def _effective_last(state: JobState, now: Now) -> float:
    """The last slot, or (same boot) where the real time elapsed since it puts it on
    today's wall clock, whichever is later: a clock stepped forward is not downtime."""
    if _same_boot(state, now):
        return max(state.last_slot, _wall_of(now, state.slot_boot))
    return state.last_slot


def _plan_calendar(spec: JobSpec, state: JobState, now: Now) -> Plan:
    tz, now_ts = job_zone(spec, now), now.wall.timestamp()
    if state.last_slot is None:
        return Plan(last_slot=now_ts, slot_boot=now.boot, next_due=slot_after(spec, now_ts, tz))
    last = _effective_last(state, now)
    if last > now_ts + EARLY:
        return _clock_behind(spec, state, last, now, tz)
    missed, latest = _slots_between(spec, last, now_ts, tz, spec.catch_up_max + 1)
    if not missed:
        return Plan(last_slot=last, slot_boot=_slot_boot(state, now, last),
                    next_due=slot_after(spec, last, tz))
    late = now_ts - latest > MISSED_AFTER
    return Plan(runs=_runs_for(spec, missed, late), due=latest, last_slot=latest,
                slot_boot=_boot_of(now, latest), next_due=slot_after(spec, latest, tz),
                missed=missed - (0 if late else 1))


def _clock_behind(spec: JobSpec, state: JobState, last: float, now: Now, tz) -> Plan:
    """The wall clock is behind the last slot: hold it, or re-anchor at now after a
    correction of days, or for a cron job with a '*' in its minute or hour, which follows
    the wall clock as cronie runs it (see the module docstring)."""
    now_ts = now.wall.timestamp()
    follows_wall = spec.cron is not None and spec.cron.wild
    if follows_wall or _corrected_by_days(now_ts, last, tz):
        return Plan(last_slot=now_ts, slot_boot=now.boot, next_due=slot_after(spec, now_ts, tz))
    return Plan(last_slot=last, slot_boot=_slot_boot(state, now, last), next_due=slot_after(spec, last, tz))


def _corrected_by_days(now: float, last: float, tz) -> bool:
    """A whole local calendar day lies between now and a last slot ahead of it."""
    return (wallclock.local_date(last, tz) - wallclock.local_date(now, tz)).days >= 2


def _slots_between(spec: JobSpec, last: float, now: float, tz, limit: int) -> tuple[int, float | None]:
    """(how many slots fall in (last, now], the latest of them), counted one by one up to
    `limit`; beyond it the count stops and the latest is found by bisection."""
    count, latest, slot = 0, None, slot_after(spec, last, tz)
    while slot <= now + EARLY:
        count, latest = count + 1, slot
        if count >= limit:
            return count, _latest_slot(spec, slot, now, tz)
        slot = slot_after(spec, slot, tz)
    return count, latest


def _latest_slot(spec: JobSpec, known: float, now: float, tz) -> float:
    """The latest slot at or before `now`, given a slot `known` at or before it. Slots
    lie at least a minute apart, so halving to half a second finds it."""
    low, high = known, now + EARLY  # slot_after(x) <= now exactly while x is before the latest
    if slot_after(spec, low, tz) > high:
        return known
    while high - low > 0.5:
        middle = (low + high) / 2
        if slot_after(spec, middle, tz) <= now + EARLY:
            low = middle
        else:
            high = middle
    return slot_after(spec, low, tz)


# ---------------------------------------------------------------- random_daily

def random_window(spec: JobSpec, day: date, tz) -> tuple[float, float]:
    """`day`'s window: from when the clock passes `after` to when it passes `before`. A
    window inside the spring-forward gap is the moment of the jump (both ends are)."""
    return wallclock.at(day, spec.after, tz), wallclock.at(day, spec.before, tz)


def draw(spec: JobSpec, day: date, now: float, tz, u: float) -> float:
    """A moment drawn uniformly from the part of `day`'s window that starts a second
    from now (so a fresh draw is always in the future)."""
    low, high = random_window(spec, day, tz)
    low = max(low, now + 1.0)
    return low + (high - low) * u


def _plan_random(spec: JobSpec, state: JobState, now: Now, u: float) -> Plan:
    """Run the stored draw when its moment has come; one draw per local day, made once
    and kept across wake-ups and restarts."""
    tz, now_ts, runs, due, drawn = job_zone(spec, now), now.wall.timestamp(), 0, None, state.draw_at
    first = _first_draw_day(spec, now_ts, tz)
    last = None if state.last_slot is None else _effective_last(state, now)
    if last is not None and _corrected_by_days(now_ts, last, tz):
        last = None  # forgotten, not waited for
    if drawn is not None and (last is None or drawn > last) and drawn <= now_ts + EARLY:
        runs, due, last = _runs_for(spec, 1, now_ts - drawn > MISSED_AFTER), drawn, drawn
    ran = None if last is None else wallclock.local_date(last, tz)
    day = first if ran is None or ran < first else _next_day(ran)  # the day after the last run
    if state.draw_day == day.isoformat() and drawn is not None and (last is None or drawn > last):
        draw_at = drawn
    else:  # a draw for another day: an older one, or a later one kept before a clock correction
        draw_at = draw(spec, day, now_ts, tz, u)
    if last is None:
        slot_boot = None
    else:  # a draw taken now was on the wall clock; a kept slot keeps its boot moment
        slot_boot = _boot_of(now, last) if due is not None else _slot_boot(state, now, last)
    return Plan(runs=runs, due=due, last_slot=last, slot_boot=slot_boot, next_due=draw_at,
                draw_day=day.isoformat(), draw_at=draw_at)


def _first_draw_day(spec: JobSpec, now: float, tz) -> date:
    """Today while its window is open, else tomorrow."""
    today = wallclock.local_date(now, tz)
    return today if now + 1.0 < random_window(spec, today, tz)[1] else _next_day(today)


def _next_day(day: date) -> date:
    return date.fromordinal(day.toordinal() + 1)


# ---------------------------------------------------------------- idle

def idle_due(spec: JobSpec, state: JobState, quiet_since: float | None, now: Now | None = None) -> float | None:
    """When an idle job may start, given since when no other non-always job has been
    active (None: something is active now). `state.last_slot` is the start of its last
    run that was not preempted: at most one such run per cooldown. With `now`,
    `quiet_since` and the result are on the boot clock and the last start is taken on it
    (`last_start`); without it, all three are on the wall clock."""
    if quiet_since is None:
        return None
    due = quiet_since + spec.idle_after
    last = state.last_slot if now is None else last_start(state, now)
    if last is not None:
        due = max(due, last + spec.cooldown)
    return due


# ---------------------------------------------------------------- exits and retries

def backoff_delay(spec: JobSpec, attempt: int, u: float) -> float:
    """Exponential backoff for the `attempt`-th failure (1-based), capped, with up to 25 %
    jitter downwards so a fleet of crashing jobs does not restart in lock step."""
    base = spec.backoff * spec.backoff_factor ** min(attempt - 1, 64)
    return min(spec.backoff_max, base) * (1.0 - 0.25 * u)


def after_exit(spec: JobSpec, attempts: int, uptime: float, exit_code: int | None,
               now: float, u: float) -> Restart | GiveUp | Done:
    """What an always job does after its process exited `uptime` seconds after starting.
    `attempts` counts the consecutive quick exits before this one; `now` and the returned
    `at` are on the caller's monotonic clock."""
    if spec.restart == "on-failure" and exit_code == 0:
        return Done(why="exited 0; restart = on-failure")
    if uptime >= spec.min_uptime:
        return Restart(at=now, attempts=0, why="restarting now")
    attempts += 1
    if attempts >= max(spec.retries, 1):
        return GiveUp(at=now + spec.failed_cooldown, attempts=attempts,
                      why=f"crash loop: {attempts} quick exits in a row")
    delay = backoff_delay(spec, attempts, u)
    return Restart(at=now + delay, attempts=attempts,
                   why=f"restarting in {delay:.2g} s (attempt {attempts}/{spec.retries})")


def after_run(spec: JobSpec, attempt: int, outcome: Outcome, now: float, u: float) -> Retry | Done:
    """What a non-always job does after attempt `attempt` (1-based) ended with `outcome`."""
    if outcome in (Outcome.OK, Outcome.STOPPED, Outcome.PREEMPTED, Outcome.UNKNOWN):  # unknown: it did run
        return Done(why=outcome.value)
    if attempt > spec.retries:
        return Done(why=f"{outcome.value} after {attempt} attempt{'s' * (attempt > 1)}")
    delay = backoff_delay(spec, attempt, u)
    return Retry(at=now + delay, attempt=attempt + 1,
                 why=f"retry {attempt}/{spec.retries} in {delay:.2g} s")
