"""Where a zone's wall clock puts a local time: the instant it passes a time, DST included.

`passes(naive, tz)` is the first instant at which the zone's clock shows `naive` or
later. An ordinary time is just that instant; a time in the hour repeated when the
clocks fall back is its first occurrence; a time the clock skips when it springs
forward is the instant of the jump (the clock passes 02:30 when it jumps from 02:00 to
03:00). So a slot in the gap comes right after the jump, as cron runs it, every day has
exactly one instant for each time, and a window [after, before] never ends after the
clock has passed `before`.

Pure: no clock, no I/O. Imports nothing from aios.
"""
from __future__ import annotations

import math
from datetime import date, datetime, time as Clock


def passes(naive: datetime, tz) -> float:
    """The first instant (epoch seconds) at which the clock of `tz` shows `naive` or later."""
    first = naive.replace(tzinfo=tz, fold=0).timestamp()
    second = naive.replace(tzinfo=tz, fold=1).timestamp()
    if second >= first:  # an ordinary time (equal), or the repeated hour: its first occurrence
        return first
    return jump_within(second, first, tz)  # in a gap fold=1 reads it with the later offset


def at(day: date, clock: Clock, tz) -> float:
    """The instant the clock of `tz` passes `clock` on local calendar `day`."""
    return passes(datetime.combine(day, clock), tz)


def local_date(ts: float, tz) -> date:
    return datetime.fromtimestamp(ts, tz).date()


def offset(ts: float, tz) -> float:
    """The zone's UTC offset at instant `ts`, in seconds."""
    return datetime.fromtimestamp(ts, tz).utcoffset().total_seconds()


def jump_within(low: float, high: float, tz) -> float:
    """The instant in (low, high] at which the offset changes to the one in force at
    `high` (transitions fall on whole seconds)."""
    after = offset(high, tz)
    low, high = math.floor(low), math.ceil(high)
    while high - low > 1:
        middle = (low + high) // 2
        if offset(middle, tz) == after:
            high = middle
        else:
            low = middle
    return float(high)
