"""aios.cron: parsing with its exact messages, next_after on tables of instants around both
DST changes in Europe/Berlin and America/New_York (and odder zones), and properties
against `cronie_fires`, a transcription of cronie's main loop (src/cron.c) that wakes
every minute and classifies the jump of local time as cronie does."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings, strategies as st

from aios import cron
from aios.cron import CronError, next_after, parse

BERLIN = ZoneInfo("Europe/Berlin")
NY = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
APIA = ZoneInfo("Pacific/Apia")     # skipped 2011-12-30 entirely: a jump of a day
UTC = timezone.utc


def local(tz, *parts, fold=0) -> datetime:
    return datetime(*parts, tzinfo=tz, fold=fold)


def fires(text: str, tz, start: datetime, count: int) -> list[datetime]:
    expr, ts, out = parse(text), start.timestamp(), []
    for _ in range(count):
        ts = next_after(expr, ts, tz)
        out.append(datetime.fromtimestamp(ts, tz))
    return out


# ---------------------------------------------------------------- parse

@pytest.mark.parametrize("text, fields", [
    ("*/5 * * * 1-5", dict(minutes=tuple(range(0, 60, 5)), dows=(1, 2, 3, 4, 5), wild=True, dow_star=False)),
    ("0 9 * * mon-fri", dict(minutes=(0,), hours=(9,), dows=(1, 2, 3, 4, 5), wild=False, dom_star=True)),
    ("0 0 1,15 * 1", dict(doms=(1, 15), dows=(1,), dom_star=False, dow_star=False)),
    ("0 0 */2 * 1", dict(doms=tuple(range(1, 32, 2)), dom_star=True)),
    ("0 12 * * 0,7", dict(dows=(0,))),
    ("0 12 * * 7", dict(dows=(0,))),
    ("0 12 * * fri-sun", dict(dows=(0, 5, 6))),
    ("0 12 * * 5-0", dict(dows=(0, 5, 6))),
    ("0 12 * * SAT,sUn", dict(dows=(0, 6))),
    ("0 0 1 JAN-mar,dec *", dict(months=(1, 2, 3, 12))),
    ("10-50/20 0-23/6 * * *", dict(minutes=(10, 30, 50), hours=(0, 6, 12, 18), wild=False)),
    ("5 * * * *", dict(minutes=(5,), wild=True)),
    ("0-59 2 * * *", dict(wild=False)),
    ("*/61 * * * *", dict(minutes=(0,))),      # a step past the range: cronie warns, we accept
    ("  1   2\t3 4 5 ", dict(minutes=(1,), hours=(2,), doms=(3,), months=(4,), dows=(5,))),
    ("@yearly", dict(minutes=(0,), hours=(0,), doms=(1,), months=(1,), dow_star=True, wild=False)),
    ("@annually", dict(doms=(1,), months=(1,))),
    ("@monthly", dict(doms=(1,), months=tuple(range(1, 13)), dow_star=True)),
    ("@weekly", dict(dows=(0,), dom_star=True)),
    ("@daily", dict(minutes=(0,), hours=(0,), wild=False)),
    ("@midnight", dict(minutes=(0,), hours=(0,))),
    ("@hourly", dict(minutes=(0,), hours=tuple(range(24)), wild=True)),
])
def test_parse(text, fields):
    expr = parse(text)
    assert expr.text == text
    assert {name: getattr(expr, name) for name in fields} == fields


FIELD_HELP = "use e.g. *, {low}, {low}-{half}, */2 or {low}-{half}/2"


@pytest.mark.parametrize("text, message", [
    ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4; "
                "e.g. \"*/5 * * * 1-5\" or \"@daily\""),
    ("* * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6; "
                    "e.g. \"*/5 * * * 1-5\" or \"@daily\""),
    ("", "expected 5 fields (minute hour day-of-month month day-of-week), got 0; "
         "e.g. \"*/5 * * * 1-5\" or \"@daily\""),
    ("60 * * * *", "minute field '60': 60 is out of range; use 0-59"),
    ("* 24 * * *", "hour field '24': 24 is out of range; use 0-23"),
    ("* * 0 * *", "day-of-month field '0': 0 is out of range; use 1-31"),
    ("* * * 13 *", "month field '13': 13 is out of range; use 1-12"),
    ("* * * * 8", "day-of-week field '8': 8 is out of range; use 0-7"),
    ("* * * foo *", "month field 'foo': 'foo' is not a number or a name; use 1-12 or jan..dec"),
    ("* * * * mon-fry", "day-of-week field 'mon-fry': 'fry' is not a number or a name; use 0-7 or sun..sat"),
    ("* * * * monday", "day-of-week field 'monday': 'monday' is not a number or a name; use 0-7 or sun..sat"),
    ("mon * * * *", "minute field 'mon': 'mon' is not a number; use 0-59"),
    ("5/10 * * * *", "minute field '5/10': a step needs a range: use 5-59/10, not 5/10"),
    ("*/0 * * * *", "minute field '*/0': the step '0' must be a whole number of 1 or more"),
    ("*/x * * * *", "minute field '*/x': the step 'x' must be a whole number of 1 or more"),
    ("30-10 * * * *", "minute field '30-10': '30-10' runs backwards and cron ranges do not wrap; use 30-59,0-10"),
    ("* * * dec-jan *", "month field 'dec-jan': 'dec-jan' runs backwards and cron ranges do not wrap; "
                        "use dec-12,1-jan"),
    ("1~5 * * * *", "minute field '1~5': '1~5' is not a value, range or step (a~b random picks are not "
                    "supported); use e.g. *, 0, 0-29, */2 or 0-29/2"),
    ("1,,2 * * * *", "minute field '1,,2': '' is not a value, range or step; use e.g. *, 0, 0-29, */2 or 0-29/2"),
    ("-1 * * * *", "minute field '-1': '-1' is not a value, range or step; use e.g. *, 0, 0-29, */2 or 0-29/2"),
    ("* * 31 4,6 *", "day-of-month 31 never comes in month 4,6; pick days the months have (February: 29 at most)"),
    ("* * 30,31 feb *", "day-of-month 30,31 never comes in month 2; pick days the months have "
                        "(February: 29 at most)"),
    ("@reboot", "@reboot has no slot here: a program to run when AIOS starts is an always job "
                "(restart = \"on-failure\" if it exits when done)"),
    ("@Daily", "unknown macro '@Daily'; use one of @yearly, @annually, @monthly, @weekly, @daily, "
               "@midnight, @hourly"),
    (5, "use five fields like \"*/5 * * * 1-5\" or a macro like \"@daily\""),
    ("* " * 150, "use five fields like \"*/5 * * * 1-5\" or a macro like \"@daily\""),
    ("\x00 * * * *", "minute field '\\x00': '\\x00' is not a value, range or step; "
                     "use e.g. *, 0, 0-29, */2 or 0-29/2"),
    ("\udc80 * * * *", "minute field '\\udc80': '\\udc80' is not a value, range or step; "
                       "use e.g. *, 0, 0-29, */2 or 0-29/2"),
])
def test_parse_errors(text, message):
    with pytest.raises(CronError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_these_are_not_refused_although_they_look_odd():
    """cronie accepts them, and so do we: the 29th of February comes every leap year, a
    restricted day-of-month with a '*' day-of-week is AND-ed, and 31 with */2 meets."""
    assert parse("0 0 29 2 *").doms == (29,)
    assert parse("0 0 31 * */2").dows == (0, 2, 4, 6)


# ---------------------------------------------------------------- next_after: tables

def _at(tz):
    return lambda *parts, fold=0: local(tz, *parts, fold=fold)


B, N, L, U, A = (_at(tz) for tz in (BERLIN, NY, LORD_HOWE, UTC, APIA))

CASES = [
    # Berlin springs forward 2024-03-31 02:00 -> 03:00 (CET -> CEST)
    ("30 2 * * *", BERLIN, B(2024, 3, 30, 12), [B(2024, 3, 31, 3, 0), B(2024, 4, 1, 2, 30)]),
    ("0 2 * * *", BERLIN, B(2024, 3, 31, 0), [B(2024, 3, 31, 3, 0), B(2024, 4, 1, 2, 0)]),
    ("0 3 * * *", BERLIN, B(2024, 3, 31, 0), [B(2024, 3, 31, 3, 0), B(2024, 4, 1, 3, 0)]),
    ("15,45 2 * * *", BERLIN, B(2024, 3, 31, 0),   # both skipped times run once, at the jump
     [B(2024, 3, 31, 3, 0), B(2024, 4, 1, 2, 15)]),
    ("30 * * * *", BERLIN, B(2024, 3, 31, 1), [B(2024, 3, 31, 1, 30), B(2024, 3, 31, 3, 30)]),
    ("*/20 2 * * *", BERLIN, B(2024, 3, 31, 0), [B(2024, 4, 1, 2, 0)]),
    ("@hourly", BERLIN, B(2024, 3, 31, 0, 30),
     [B(2024, 3, 31, 1), B(2024, 3, 31, 3), B(2024, 3, 31, 4)]),
    # Berlin falls back 2024-10-27 03:00 -> 02:00 (CEST -> CET): 02:xx happens twice
    ("30 2 * * *", BERLIN, B(2024, 10, 27, 0), [B(2024, 10, 27, 2, 30), B(2024, 10, 28, 2, 30)]),
    ("30 2 * * *", BERLIN, B(2024, 10, 27, 2, 40), [B(2024, 10, 28, 2, 30)]),
    ("*/30 * * * *", BERLIN, B(2024, 10, 27, 1, 50),
     [B(2024, 10, 27, 2, 0), B(2024, 10, 27, 2, 30), B(2024, 10, 27, 2, 0, fold=1),
      B(2024, 10, 27, 2, 30, fold=1), B(2024, 10, 27, 3, 0)]),
    ("10 * * * *", BERLIN, B(2024, 10, 27, 2, 20, fold=1),   # from the second pass
     [B(2024, 10, 27, 3, 10)]),
    ("10 * * * *", BERLIN, B(2024, 10, 27, 2, 20),   # from the first pass
     [B(2024, 10, 27, 2, 10, fold=1), B(2024, 10, 27, 3, 10)]),
    ("0-59/20 2 * * *", BERLIN, B(2024, 10, 27, 2, 50),   # fixed: first pass only
     [B(2024, 10, 28, 2, 0)]),
    ("* 2 * * *", BERLIN, B(2024, 10, 27, 2, 58),   # wildcard minute: both passes
     [B(2024, 10, 27, 2, 59), B(2024, 10, 27, 2, 0, fold=1)]),
    # New York springs forward 2024-03-10 02:00 -> 03:00, falls back 2024-11-03 02:00 -> 01:00
    ("30 2 * * *", NY, N(2024, 3, 9, 23), [N(2024, 3, 10, 3, 0), N(2024, 3, 11, 2, 30)]),
    ("59 1 * * *", NY, N(2024, 3, 10, 0), [N(2024, 3, 10, 1, 59), N(2024, 3, 11, 1, 59)]),
    ("*/20 2 * * *", NY, N(2024, 3, 10, 0), [N(2024, 3, 11, 2, 0)]),
    ("30 1 * * *", NY, N(2024, 11, 3, 0), [N(2024, 11, 3, 1, 30), N(2024, 11, 4, 1, 30)]),
    ("0,30 * * * *", NY, N(2024, 11, 3, 0, 45),
     [N(2024, 11, 3, 1, 0), N(2024, 11, 3, 1, 30), N(2024, 11, 3, 1, 0, fold=1),
      N(2024, 11, 3, 1, 30, fold=1), N(2024, 11, 3, 2, 0)]),
    ("0 1 * * sun", NY, N(2024, 11, 2), [N(2024, 11, 3, 1, 0), N(2024, 11, 10, 1, 0)]),
    # Lord Howe moves by 30 minutes: 02:00 -> 02:30 in October, 02:00 -> 01:30 in April
    ("15 2 * * *", LORD_HOWE, L(2024, 10, 6), [L(2024, 10, 6, 2, 30)]),
    ("45 1 * * *", LORD_HOWE, L(2024, 4, 7), [L(2024, 4, 7, 1, 45), L(2024, 4, 8, 1, 45)]),
    ("45 * * * *", LORD_HOWE, L(2024, 4, 7, 1), [L(2024, 4, 7, 1, 45), L(2024, 4, 7, 1, 45, fold=1)]),
    # Apia skipped 2011-12-30: a jump of a day is a correction, its times are not run
    ("0 12 * * *", APIA, A(2011, 12, 29, 13), [A(2011, 12, 31, 12)]),
    # day-of-month OR day-of-week when both are restricted, AND when one starts with '*'
    ("0 0 13 * 5", UTC, U(2024, 9, 1),
     [U(2024, 9, d) for d in (6, 13, 20, 27)] + [U(2024, 10, 4), U(2024, 10, 11), U(2024, 10, 13)]),
    ("0 0 */13 * 5", UTC, U(2024, 9, 1), [U(2024, 9, 27), U(2024, 11, 1), U(2024, 12, 27)]),
    ("0 0 13 * */7", UTC, U(2024, 9, 1), [U(2024, 10, 13), U(2025, 4, 13)]),
    ("0 12 * * 7", UTC, U(2024, 9, 2), [U(2024, 9, 8, 12)]),
    ("@weekly", UTC, U(2024, 9, 2), [U(2024, 9, 8)]),
    ("@monthly", UTC, U(2024, 1, 31), [U(2024, 2, 1), U(2024, 3, 1)]),
    ("@yearly", UTC, U(2024, 1, 1), [U(2025, 1, 1)]),
    ("0 0 29 2 *", UTC, U(2024, 3, 1), [U(2028, 2, 29), U(2032, 2, 29)]),
    ("0 0 29 2 *", UTC, U(2096, 3, 1), [U(2104, 2, 29)]),
    ("59 23 31 12 *", UTC, U(2024, 12, 31, 23, 59), [U(2025, 12, 31, 23, 59)]),
]


@pytest.mark.parametrize("text, tz, start, expected", CASES,
                         ids=[f"{c[0]}@{c[1]}@{c[2]:%Y-%m-%dT%H:%M}" for c in CASES])
def test_next_after(text, tz, start, expected):
    assert fires(text, tz, start, len(expected)) == expected
    assert [f.utcoffset() for f in fires(text, tz, start, len(expected))] == [e.utcoffset() for e in expected]


def test_next_after_is_strictly_after_even_at_a_slot():
    expr = parse("*/5 * * * *")
    slot = local(UTC, 2024, 5, 6, 10, 5).timestamp()
    assert next_after(expr, slot, UTC) == slot + 300
    assert next_after(expr, slot - 0.001, UTC) == slot


# ---------------------------------------------------------------- cronie's loop, transcribed

def cronie_fires(expr, tz, start: float, end: float) -> list[float]:
    """The instants in (start, end] at which cronie's main loop (src/cron.c) starts the job
    of `expr`, waking at the start of every minute as cronie's cron_sleep does."""
    def local_minute(t: float) -> int:  # cronie's clockTime: minutes since the epoch, local
        return int((t + datetime.fromtimestamp(t, tz).utcoffset().total_seconds()) // 60)

    def find_jobs(vtime: int, do_wild: bool, do_non_wild: bool) -> bool:
        moment = datetime(1970, 1, 1) + timedelta(minutes=vtime)   # gmtime(virtualSecond)
        day_of_month, day_of_week = moment.day in expr.doms, moment.isoweekday() % 7 in expr.dows
        day = (day_of_week and day_of_month) if (expr.dom_star or expr.dow_star) else (day_of_week or day_of_month)
        due = moment.minute in expr.minutes and moment.hour in expr.hours and moment.month in expr.months and day
        return due and ((do_non_wild and not expr.wild) or (do_wild and expr.wild))

    t = start - start % 60
    virtual = local_minute(t)
    out = []
    while t + 60 <= end:
        t += 60
        running = local_minute(t)
        diff, run = running - virtual, False
        if diff == 1:
            virtual, run = running, find_jobs(running, True, True)
        elif diff > 180 or diff < -180:    # large: the clock changed a lot
            virtual, run = running, find_jobs(running, True, True)
        elif diff > 5:                     # medium: DST began
            run = find_jobs(running, True, False)
            while virtual < running:
                virtual += 1
                run = find_jobs(virtual, False, True) or run
        elif diff > 0:                     # small: woke up late
            while virtual < running:
                virtual += 1
                run = find_jobs(virtual, True, True) or run
        else:                              # negative: DST ended
            run = find_jobs(running, True, False)
        if run:
            out.append(t)
    return out


def ours(expr, tz, start: float, end: float) -> list[float]:
    out, ts = [], start
    while True:
        ts = next_after(expr, ts, tz)
        if ts > end:
            return out
        assert not out or ts > out[-1]
        out.append(ts)


_CHANGES = [(BERLIN, "2024-03-31T01:00"), (BERLIN, "2024-10-27T01:00"), (NY, "2024-03-10T07:00"),
            (NY, "2024-11-03T06:00"), (LORD_HOWE, "2024-10-05T15:30"), (LORD_HOWE, "2024-04-06T15:00"),
            (APIA, "2011-12-30T10:00"), (ZoneInfo("Antarctica/Troll"), "2024-03-31T01:00"),
            (BERLIN, "2024-06-15T12:00")]
TABLE = ["30 2 * * *", "0 2 * * *", "59 1 * * *", "0 3 * * *", "*/15 * * * *", "30 * * * *",
         "15 2,3 * * *", "0-59/20 2 * * *", "* 2 * * *", "@hourly", "@daily", "0 1 * * sun",
         "30 2 31 3 *", "30 2 27 10 *", "0 0 1,15 * 1", "0 0 */2 * 1", "5 4 * * sun-sat", "1 1 * * *"]


@pytest.mark.parametrize("text", TABLE)
@pytest.mark.parametrize("tz, change", _CHANGES, ids=[f"{tz}-{when}" for tz, when in _CHANGES])
def test_next_after_matches_cronie_around_each_change(text, tz, change):
    middle = datetime.fromisoformat(change).replace(tzinfo=UTC).timestamp()
    expr = parse(text)
    start, end = middle - 2 * 86400, middle + 2 * 86400
    expected = [t for t in cronie_fires(expr, tz, start - 86400, end) if t > start]
    assert ours(expr, tz, start, end) == expected


# ---------------------------------------------------------------- properties

def _item(low: int, high: int, names: tuple):
    number = st.integers(low, high)
    named = number.map(lambda n: names[n - low] if names and n - low < len(names) else str(n))
    value = st.one_of(number.map(str), named)
    ranged = st.tuples(number, number).map(sorted).map(lambda ab: f"{ab[0]}-{ab[1]}")
    stepped = st.tuples(st.just("*") | ranged, st.integers(1, high - low + 1)).map(lambda p: f"{p[0]}/{p[1]}")
    return st.one_of(st.just("*"), value, ranged, stepped)


def _field(low: int, high: int, names: tuple = ()):
    return st.lists(_item(low, high, names), min_size=1, max_size=3).map(",".join)


EXPRESSIONS = st.tuples(
    _field(0, 59), _field(0, 23), _field(1, 31),
    _field(1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    _field(0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun"))).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(text=EXPRESSIONS, place=st.sampled_from(_CHANGES), shift=st.integers(-86400, 86400))
def test_next_after_matches_cronie_on_random_expressions(text, place, shift):
    try:
        expr = parse(text)
    except CronError:
        assume(False)
    tz, change = place
    middle = datetime.fromisoformat(change).replace(tzinfo=UTC).timestamp() + shift
    start, end = middle - 86400, middle + 86400
    expected = [t for t in cronie_fires(expr, tz, start - 86400, end) if t > start]
    assert ours(expr, tz, start, end) == expected


@settings(max_examples=200, deadline=None)
@given(text=EXPRESSIONS, ts=st.floats(0, 4e9), tz=st.sampled_from([UTC, BERLIN, NY, LORD_HOWE]))
def test_next_after_is_the_first_matching_minute_after(text, ts, tz):
    """Away from DST changes (checked below), the answer is the first local minute after
    `ts` whose fields match, and every minute in between does not."""
    try:
        expr = parse(text)
    except CronError:
        assume(False)
    found = next_after(expr, ts, tz)
    assert found > ts
    moment = datetime.fromtimestamp(found, tz)
    assume(moment.utcoffset() == datetime.fromtimestamp(ts, tz).utcoffset())  # no change in between
    assert (moment.second, moment.microsecond) == (0, 0)
    assert cron._day_matches(expr, moment.date()) and moment.month in expr.months
    assert moment.hour in expr.hours and moment.minute in expr.minutes
    probe = datetime.fromtimestamp(ts - ts % 60 + 60, tz)
    for _ in range(min(int((found - ts) // 60), 3000)):
        if probe >= moment:
            break
        assert not (cron._day_matches(expr, probe.date()) and probe.month in expr.months
                    and probe.hour in expr.hours and probe.minute in expr.minutes), probe
        probe = datetime.fromtimestamp(probe.timestamp() + 60, tz)
