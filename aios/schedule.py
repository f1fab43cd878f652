"""Every scheduling rule of AIOS, as pure functions of (spec, state, now).

No clock, no I/O, no randomness of its own: `now` is an aware local datetime (its tzinfo
carries the DST rules) or, for durations, a number of seconds on the caller's clock;
random draws take `u` in [0, 1). Functions return decisions (`Plan`, `Restart`,
`GiveUp`, `Retry`, `Done`) that the engine carries out. Imports only aios.spec.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta

from .spec import JobSpec, JobState, JobType, Outcome, record

# A slot started later than this is "missed": its job's catch_up policy decides.
MISSED_AFTER = 1.0
# A slot this close ahead counts as due: timers and clocks disagree by microseconds.
EARLY = 0.001
_DAY = timedelta(days=1)


@record
class Plan:
    """What a scheduled job should do now: start `runs` runs (for slot `due`), then
    remember `last_slot` and wait for `next_due` (epoch seconds)."""

    runs: int = 0
    due: float | None = None
    last_slot: float | None = None
    next_due: float | None = None
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


# ---------------------------------------------------------------- wall-clock slots
# Instants are epoch seconds: arithmetic and comparisons between aware datetimes of one
# zone use wall-clock time in Python, which is wrong across a DST change.

def at_local(day: date, clock, tz) -> float:
    """The instant `clock` on local calendar `day`. A time that does not exist (spring
    forward) lands as far after the jump as it was after the last valid time; an ambiguous
    one (fall back) is its first occurrence: either way every day has exactly one."""
    return datetime.combine(day, clock, tzinfo=tz).timestamp()


def _local_date(ts: float, tz) -> date:
    return datetime.fromtimestamp(ts, tz).date()


def daily_slot_after(spec: JobSpec, ts: float, tz) -> float:
    """The first daily slot strictly after instant `ts`."""
    day = _local_date(ts, tz)
    while True:
        slot = at_local(day, spec.time, tz)
        if slot > ts:
            return slot
        day += _DAY


def _slots_between(spec: JobSpec, last: float, now: float, tz, limit: int) -> tuple[int, float | None]:
    """(how many slots fall in (last, now], the latest of them); daily slots are counted
    one by one up to `limit`, interval slots arithmetically."""
    if spec.type is JobType.INTERVAL:
        count = int((now + EARLY - last) // spec.interval)
        return count, (last + spec.interval * count if count else None)
    count, latest, slot = 0, None, daily_slot_after(spec, last, tz)
    while slot <= now + EARLY:
        count, latest = count + 1, slot
        if count >= limit:  # far behind: stop counting, jump to the most recent slot
            today = _local_date(now, tz)
            recent = at_local(today, spec.time, tz)
            return count, recent if recent <= now else at_local(today - _DAY, spec.time, tz)
        slot = daily_slot_after(spec, slot, tz)
    return count, latest


def _next_slot(spec: JobSpec, after: float, tz) -> float:
    if spec.type is JobType.INTERVAL:
        return after + spec.interval
    return daily_slot_after(spec, after, tz)


def _runs_for(spec: JobSpec, missed: int, late: bool) -> int:
    """Runs owed for `missed` slots whose latest is `late` (or on time)."""
    if spec.catch_up == "all":
        return min(missed, spec.catch_up_max)
    if late and spec.catch_up == "skip":
        return 0
    return 1


def plan(spec: JobSpec, state: JobState, now: datetime, u: float = 0.5) -> Plan:
    """What a daily, interval or random_daily job does at `now`. A job never seen before
    anchors at `now` (an interval job runs at once, a daily one waits for its time)."""
    if spec.type is JobType.RANDOM_DAILY:
        return _plan_random(spec, state, now, u)
    tz, now_ts, last = now.tzinfo, now.timestamp(), state.last_slot
    if last is None:
        if spec.type is JobType.INTERVAL:
            return Plan(runs=1, due=now_ts, last_slot=now_ts, next_due=now_ts + spec.interval)
        return Plan(last_slot=now_ts, next_due=daily_slot_after(spec, now_ts, tz))
    missed, latest = _slots_between(spec, last, now_ts, tz, spec.catch_up_max + 1)
    if not missed:
        return Plan(last_slot=last, next_due=_next_slot(spec, last, tz))
    late = now_ts - latest > MISSED_AFTER
    runs = _runs_for(spec, missed, late)
    if spec.type is JobType.INTERVAL and late and runs:
        latest = now_ts  # "measured from the last start": a late start re-anchors the grid
    return Plan(runs=runs, due=latest, last_slot=latest, next_due=_next_slot(spec, latest, tz),
                missed=missed - (0 if late else 1))


# ---------------------------------------------------------------- random_daily

def random_window(spec: JobSpec, day: date, tz) -> tuple[float, float]:
    return at_local(day, spec.after, tz), at_local(day, spec.before, tz)


def draw(spec: JobSpec, day: date, now: float, tz, u: float) -> float:
    """A moment drawn uniformly from the part of `day`'s window that starts a second
    from now (so a fresh draw is always in the future)."""
    low, high = random_window(spec, day, tz)
    low = max(low, now + 1.0)
    return low + (high - low) * u


def _plan_random(spec: JobSpec, state: JobState, now: datetime, u: float) -> Plan:
    """Run the stored draw when its moment has come; keep one draw per day, made once."""
    tz, now_ts, runs, due, last = now.tzinfo, now.timestamp(), 0, None, state.last_slot
    drawn = state.draw_at
    if drawn is not None and (last is None or drawn > last) and drawn <= now_ts + EARLY:
        late = now_ts - drawn > MISSED_AFTER
        runs, due, last = _runs_for(spec, 1, late), drawn, drawn
    day = _draw_day(spec, last, now_ts, tz)
    if state.draw_day == day.isoformat() and drawn is not None and (last is None or drawn > last):
        draw_at = drawn
    else:
        draw_at = draw(spec, day, now_ts, tz, u)
    return Plan(runs=runs, due=due, last_slot=last, next_due=draw_at,
                draw_day=day.isoformat(), draw_at=draw_at)


def _draw_day(spec: JobSpec, last: float | None, now: float, tz) -> date:
    """Today, unless today's run is done or today's window is over: then tomorrow."""
    today = _local_date(now, tz)
    ran_today = last is not None and _local_date(last, tz) >= today
    if not ran_today and now + 1.0 < random_window(spec, today, tz)[1]:
        return today
    return today + _DAY


# ---------------------------------------------------------------- idle

def idle_due(spec: JobSpec, state: JobState, quiet_since: float | None) -> float | None:
    """When an idle job may start (epoch seconds), given since when no other non-always
    job has been active (None: something is active now). `state.last_slot` is the start
    of its last run that was not preempted: at most one such run per cooldown."""
    if quiet_since is None:
        return None
    due = quiet_since + spec.idle_after
    if state.last_slot is not None:
        due = max(due, state.last_slot + spec.cooldown)
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
