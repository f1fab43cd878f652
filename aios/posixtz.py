"""POSIX TZ rules as time zones: `TZ=JST-9`, `TZ=EST5EDT,M3.2.0,M11.1.0`, `TZ=<+0330>-3:30`.

`rule_zone(text)` reads `text` with the grammar glibc reads when TZ names no zone file:

    std offset [dst [offset] [,start[/time],end[/time]]]

names of three or more letters or `<quoted>` ones of letters, digits, '+' and '-';
offsets `[+-]hh[:mm[:ss]]` west of UTC (JST-9 is nine hours east); start and end as
`Jn` (1-365, no leap day), `n` (0-365) or `Mm.w.d` (day d of week w of month m), at an
optional time from -167 to 167 hours (default 02:00). As in glibc, a DST offset left
out is one hour ahead of standard time, and an end rule left out is M11.1.0. It returns
None for what glibc would not read as a rule, for values outside the POSIX ranges that
glibc silently clamps (an offset of 24 hours or more, minutes over 59), and for a DST
name without rules (`lacks_dst_rules`): glibc then borrows the transition instants of
its posixrules file (New York's, whatever the offsets) and, after 2037, New York's
offsets too, which no one means.

No rule arithmetic is written here: the rule becomes the footer of a minimal TZif
version 2 file without transitions, and zoneinfo applies the footer to every instant
(RFC 8536, section 3.3). One correction: CPython's zoneinfo reads the zero-based day
form `n` one day early (it adds n to the day before January 1st), so a probe decides
whether `n` is written as n+1; then n = 365 cannot be written and is refused.

Pure: no clock, no I/O. Imports nothing from aios.
"""
from __future__ import annotations

import io
import re
import struct

_NAME = r"[A-Za-z]{3,}|<[A-Za-z0-9+-]{3,}>"
_OFFSET = r"[+-]?\d{1,2}(?::\d{1,2}(?::\d{1,2})?)?"
_RULE = r"(?:J\d{1,3}|\d{1,3}|M\d{1,2}\.\d\.\d)(?:/[+-]?\d{1,3}(?::\d{1,2}(?::\d{1,2})?)?)?"
_TZ = re.compile(rf"(?P<std>{_NAME})(?P<stdoff>{_OFFSET})"
                 rf"(?:(?P<dst>{_NAME})(?P<dstoff>{_OFFSET})?(?:,(?P<start>{_RULE})?(?:,(?P<end>{_RULE})?)?)?)?",
                 re.ASCII)
_DEFAULT_END = "M11.1.0"   # glibc's when only the start is given


def rule_zone(text: str):
    """A tzinfo for POSIX TZ rule `text`, or None if it is not one glibc reads."""
    match = _TZ.fullmatch(text) if isinstance(text, str) else None
    footer = _footer(match) if match else None
    if footer is None:
        return None
    from zoneinfo import ZoneInfo

    data = _tzif(footer, match["std"].strip("<>"), _seconds(match["stdoff"]))
    try:
        return ZoneInfo.from_file(io.BytesIO(data), key=text)
    except ValueError:  # a rule zoneinfo reads otherwise than glibc: refused, never misread
        return None


def lacks_dst_rules(text: str) -> bool:
    """True for a rule like CET-1CEST that names DST without saying when it applies."""
    match = _TZ.fullmatch(text) if isinstance(text, str) else None
    return bool(match and match["dst"] and not match["start"] and not match["end"])


def _footer(match: re.Match) -> str | None:
    """The rule in the form zoneinfo reads (quoted names, h:mm:ss), or None."""
    if not _offset_ok(match["stdoff"], 23):
        return None
    std = f"<{match['std'].strip('<>')}>{_clock(match['stdoff'])}"
    if not match["dst"]:
        return std
    dstoff, start, end = match["dstoff"], match["start"], match["end"]
    dst_east = _seconds(dstoff) if dstoff else _seconds(match["stdoff"]) + 3600
    if (dstoff and not _offset_ok(dstoff, 23)) or abs(dst_east) >= 86400 or not start:
        return None
    rules = (start, end or _DEFAULT_END)
    if not all(_rule_ok(rule) for rule in rules):
        return None
    dst = f"<{match['dst'].strip('<>')}>" + (_clock(dstoff) if dstoff else "")
    return f"{std}{dst},{','.join(_rule(rule) for rule in rules)}"


def _parts(clock: str) -> tuple[int, list[int]]:
    """(sign, [hours, minutes, seconds]) of "[+-]h[:m[:s]]"."""
    sign = -1 if clock.startswith("-") else 1
    values = [int(part) for part in clock.lstrip("+-").split(":")]
    return sign, values + [0] * (3 - len(values))


def _offset_ok(clock: str, max_hours: int) -> bool:
    _, (hours, minutes, seconds) = _parts(clock)
    return hours <= max_hours and minutes <= 59 and seconds <= 59


def _clock(clock: str) -> str:
    sign, (hours, minutes, seconds) = _parts(clock)
    return f"{'-' if sign < 0 else ''}{hours}:{minutes:02}:{seconds:02}"


def _seconds(clock: str) -> int:
    """A POSIX offset (west of UTC) as seconds east of UTC."""
    sign, (hours, minutes, seconds) = _parts(clock)
    return -sign * (hours * 3600 + minutes * 60 + seconds)


def _rule_ok(rule: str) -> bool:
    date, _, time = rule.partition("/")
    if time and not _offset_ok(time, 167):
        return False
    if date.startswith("M"):
        month, week, day = (int(part) for part in date[1:].split("."))
        return 1 <= month <= 12 and 1 <= week <= 5 and day <= 6
    if date.startswith("J"):
        return 1 <= int(date[1:]) <= 365
    return int(date) <= 365


def _rule(rule: str) -> str:
    date, _, time = rule.partition("/")
    if date[0].isdigit():
        date = str(int(date) + _zero_based_shift())
    return f"{date}/{_clock(time)}" if time else date


def _zero_based_shift() -> int:
    """1 where zoneinfo reads day n of the zero-based form as day n - 1, else 0."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    probe = ZoneInfo.from_file(io.BytesIO(_tzif("<AAA>0<BBB>-1,10/0,20/0", "AAA", 0)))
    day_nine = datetime(1970, 1, 10, 12, tzinfo=timezone.utc)  # DST must start a day later
    return 1 if day_nine.astimezone(probe).utcoffset() else 0


def _tzif(footer: str, name: str, utoff: int) -> bytes:
    """A TZif version 2 file without transitions: one local time type, and the rule."""
    chars = name.encode("ascii") + b"\0"
    header = b"TZif2" + b"\0" * 15 + struct.pack(">6l", 0, 0, 0, 0, 1, len(chars))
    block = struct.pack(">lBB", utoff, 0, 0) + chars
    return header + block + header + block + b"\n" + footer.encode("ascii") + b"\n"
