"""Cron expressions as cronie reads them, and the instants cronie would start them.

`parse(text)` reads five fields, minute (0-59) hour (0-23) day-of-month (1-31) month
(1-12 or jan..dec) day-of-week (0-7 or sun..sat; 0 and 7 are Sunday), each a list of
`*`, `N`, `N-M`, `*/S` or `N-M/S` (names in any case; a day-of-week range ending in
Sunday may say 0: fri-sun, 5-0), or one of @yearly (@annually), @monthly, @weekly,
@daily (@midnight), @hourly. Mistakes are one-line `CronError`s naming the field and
the fix, and so are what cronie accepts silently: a range written backwards (it matches
nothing) and a date that never comes (31 * apr); @reboot has no slot here (an always job
runs at start). cronie's `~` random pick is refused.

`next_after(expr, ts, tz)` is the first instant after `ts` at which cronie, running in
zone `tz`, starts the job:
- A minute matches when its minute, hour and month do, and its day: day-of-month OR
  day-of-week when both fields are restricted, AND when either starts with '*' (cronie's
  rule, so "*/2" in day-of-month still ANDs with day-of-week).
- DST. cronie looks at the local minute once a minute. Minutes the clock skips when it
  springs forward: a fixed-time job (minute and hour fields not starting with '*') due
  in them runs once, right after the jump; a wildcard job does not (it runs at times
  that exist). Minutes the clock repeats when it falls back: a fixed-time job runs in
  the first pass only; a wildcard job follows the wall clock and runs in both. These
  are cronie's rules for changes of less than 3 hours; a change of 3 hours or more is a
  correction (skipped minutes are skipped, repeated ones run again for every job), and
  a skip of 4 minutes or less is a late wake-up (every job of the skipped minutes runs).

Pure: no clock, no I/O. Imports aios.errors, aios.record and aios.wallclock.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from datetime import date, datetime, timedelta, timezone

from . import wallclock
from .errors import AiosError
from .record import record

__all__ = ["CronError", "CronExpr", "parse", "next_after"]


class CronError(AiosError):
    """A cron expression is invalid; the message names the field and the fix."""


@record
class CronExpr:
    text: str                           # as written
    minutes: tuple[int, ...]            # each field: the sorted values it matches
    hours: tuple[int, ...]
    doms: tuple[int, ...]
    months: tuple[int, ...]
    dows: tuple[int, ...]               # 0 = Sunday .. 6 = Saturday
    dom_star: bool = False              # the field starts with '*': days are AND-ed (cronie)
    dow_star: bool = False
    wild: bool = False                  # minute or hour starts with '*': a wildcard job (DST rules)


_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()),
           ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
           ("day-of-week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_ITEM = re.compile(r"(?:(\*)|(\w+)(?:-(\w+))?)(?:/(\w+))?", re.ASCII)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)   # February as in leap years
_MAX_TEXT = 200


# ---------------------------------------------------------------- parse

def parse(text: object) -> CronExpr:
    """A cron expression, or CronError naming the field and the fix."""
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise CronError("use five fields like \"*/5 * * * 1-5\" or a macro like \"@daily\"")
    fields = text.split()
    if len(fields) == 1 and fields[0].startswith("@"):
        fields = _macro(fields[0]).split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}; "
                        "e.g. \"*/5 * * * 1-5\" or \"@daily\"")
    values = [_field(field, spec) for field, spec in zip(fields, _FIELDS)]
    dows = tuple(sorted({day % 7 for day in values[4]}))
    expr = CronExpr(text=text, minutes=values[0], hours=values[1], doms=values[2], months=values[3],
                    dows=dows, dom_star=fields[2].startswith("*"), dow_star=fields[4].startswith("*"),
                    wild=fields[0].startswith("*") or fields[1].startswith("*"))
    _check_some_day(expr)
    return expr


def _macro(word: str) -> str:
    if word == "@reboot":
        raise CronError("@reboot has no slot here: a program to run when AIOS starts is an always job "
                        "(restart = \"on-failure\" if it exits when done)")
    if word not in _MACROS:
        raise CronError(f"unknown macro {word!r}; use one of {', '.join(_MACROS)}")
    return _MACROS[word]


def _field(text: str, spec: tuple) -> tuple[int, ...]:
    name, low, high, names = spec
    values: set[int] = set()
    for item in text.split(","):
        values.update(_item(item, name, low, high, names, text))
    return tuple(sorted(values))


def _item(item: str, name: str, low: int, high: int, names: tuple, field: str) -> range:
    where = f"{name} field {field!r}"
    match = _ITEM.fullmatch(item)
    if not match:
        hint = " (a~b random picks are not supported)" if "~" in item else ""
        raise CronError(f"{where}: {item!r} is not a value, range or step{hint}; "
                        f"use e.g. *, {low}, {low}-{high // 2}, */2 or {low}-{high // 2}/2")
    star, first, last, step = match.groups()
    start = low if star else _number(first, where, low, high, names)
    end = high if star else _number(last, where, low, high, names) if last else start
    if last is None and step and not star:
        raise CronError(f"{where}: a step needs a range: use {first}-{high}/{step}, not {first}/{step}")
    if name == "day-of-week" and last is not None and end == 0 and start > 0:
        end = 7  # fri-sun, 5-0: the range runs to Sunday
    if start > end:
        raise CronError(f"{where}: {item!r} runs backwards and cron ranges do not wrap; "
                        f"use {first}-{high},{low}-{last}")
    by = _step(step, where) if step else 1
    return range(start, end + 1, by)


def _number(word: str, where: str, low: int, high: int, names: tuple) -> int:
    if word.isdigit():
        value = int(word)
        if low <= value <= high:
            return value
        raise CronError(f"{where}: {word} is out of range; use {low}-{high}")
    if word.lower() in names:
        return names.index(word.lower()) + low
    choices = f"{low}-{high}" + (f" or {names[0]}..{names[-1]}" if names else "")
    raise CronError(f"{where}: {word!r} is not a number{' or a name' if names else ''}; use {choices}")


def _step(word: str, where: str) -> int:
    if not word.isdigit() or int(word) == 0:
        raise CronError(f"{where}: the step {word!r} must be a whole number of 1 or more")
    return int(word)


def _check_some_day(expr: CronExpr) -> None:
    """Refuse a date that never comes (cronie accepts it and never runs the job)."""
    if expr.dom_star or not expr.dow_star:  # day 1 (in every '*' field) or any weekday (OR) comes
        return
    if not any(day <= _DAYS_IN_MONTH[month - 1] for month in expr.months for day in expr.doms):
        raise CronError(f"day-of-month {_show(expr.doms)} never comes in month {_show(expr.months)}; "
                        "pick days the months have (February: 29 at most)")


def _show(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


# ---------------------------------------------------------------- next_after

def next_after(expr: CronExpr, ts: float, tz) -> float:
    """The first instant (epoch seconds) after `ts` at which cronie in zone `tz` starts
    the job of `expr` (see the module docstring for the DST rules)."""
    best, minutes = float("inf"), _matches(expr, _scan_start(ts, tz))
    while True:
        key, fires = _fires(expr, next(minutes), tz)
        best = min([best] + [fire for fire in fires if fire > ts])
        if key >= best:  # later minutes lie at or after `key` on the instant line
            return best


def _scan_start(ts: float, tz) -> datetime:
    """A local minute early enough that no minute before it fires after `ts`: a minute
    repeated by a fall-back near `ts` fires again up to the fold's length later."""
    lowest = min(wallclock.offset(ts + delta, tz) for delta in (-86400.0, 0.0, 86400.0))
    local = datetime.fromtimestamp(ts + lowest, timezone.utc).replace(tzinfo=None)
    return local.replace(second=0, microsecond=0)


def _matches(expr: CronExpr, minute: datetime):
    """The local minutes from `minute` on that `expr` matches, in order."""
    while True:
        minute = _next_match(expr, minute)
        yield minute
        minute += timedelta(minutes=1)


def _next_match(expr: CronExpr, at: datetime) -> datetime:
    """The first local minute at or after `at` that `expr` matches (parse guarantees one
    within 28 years: every weekday meets every date in that time)."""
    while True:
        if at.month not in expr.months:
            at = datetime(at.year + at.month // 12, at.month % 12 + 1, 1)
        elif not _day_matches(expr, at.date()):
            at = datetime.combine(at.date() + timedelta(days=1), datetime.min.time())
        else:
            hour = _first_from(expr.hours, at.hour)
            minute = _first_from(expr.minutes, at.minute if hour == at.hour else 0)
            if hour is None:
                at = datetime.combine(at.date() + timedelta(days=1), datetime.min.time())
            elif minute is None:
                at = at.replace(minute=0) + timedelta(hours=1)
            else:
                return at.replace(hour=hour, minute=minute)


def _first_from(values: tuple[int, ...], start: int) -> int | None:
    index = bisect_left(values, start)
    return values[index] if index < len(values) else None


def _day_matches(expr: CronExpr, day: date) -> bool:
    dom = day.day in expr.doms
    dow = day.isoweekday() % 7 in expr.dows
    return (dom and dow) if (expr.dom_star or expr.dow_star) else (dom or dow)


def _fires(expr: CronExpr, minute: datetime, tz) -> tuple[float, list[float]]:
    """(where local `minute` lies on the instant line, the instants cronie starts the job
    for it): itself; in a gap, the jump or nothing; in a fold, one or both passes."""
    first = minute.replace(tzinfo=tz, fold=0).timestamp()
    second = minute.replace(tzinfo=tz, fold=1).timestamp()
    if second == first:
        return first, [first]
    if second > first:
        return first, [first, second] if _runs_again(expr, (second - first) / 60) else [first]
    jump = wallclock.jump_within(second, first, tz)
    return jump, [jump] if _runs_at_jump(expr, (first - second) / 60) else []


def _runs_at_jump(expr: CronExpr, skipped: float) -> bool:
    """Whether cronie runs a job due in minutes the clock skipped, right after the jump.
    cronie's timeDiff on the first minute after a skip of n minutes is n + 1."""
    late = skipped + 1
    return late <= 5 or (late <= 180 and not expr.wild)


def _runs_again(expr: CronExpr, repeated: float) -> bool:
    """Whether cronie runs a job again in minutes the clock repeats (timeDiff 1 - n)."""
    return expr.wild or 1 - repeated < -180
