"""Job logs read back for people (`aios logs`): one job's or every job's lines, merged by
time, chosen by a time window, a pattern and a stream, and followed as they are written.
Reads the files only, so it works with the daemon up or down.

Which lines. Without a time window: the last N of the current logs (after the pattern
and stream filters, which read the whole current files). With --since or --until: every
line in the window, the rotated files (JOB.log.1 ...) included. Lines are merged by their
time; a raw line (written with `timestamps = "none"`) has none: in a log that also holds
stamped lines it goes with the stamped line above it; a log with no stamped line at all
cannot be merged, so its lines come first, job by job, and a time window cannot choose
among them (`notes` says so).

The time grammar of --since and --until (`when`): "now"; a duration ago: "30s", "10m",
"2h", "1d", "1h30m" (also with " ago"); a local time today: "18:00", "18:00:05"; a
local date at midnight or a date with a time: "2026-11-29", "2026-11-29 18:00",
"2026-11-29T18:00:05", and with an offset ("...+01:00", "...Z") for another zone;
"today" and "yesterday" (local midnight). Imports logs, logformat, fswatch and, to read
durations, spec.
"""
from __future__ import annotations

import heapq
import os
import re
import time
from collections import deque

from . import logformat, logs
from .record import record

__all__ = ["Filter", "Entry", "when", "log_files", "last", "window", "Follow"]

_CLOCK_RE = re.compile(r"(\d{1,2}):(\d\d)(?::(\d\d))?")
WHEN_HELP = ('use a duration ago (30s, 10m, 2h, 1d), a local time (18:00, 2026-11-29, "2026-11-29 18:00"), '
             "today, yesterday or now")


@record
class Entry:
    """A line of a job's log, with the time it is merged by (its own, or that of the
    stamped line above it; None in a log without stamps)."""

    key: float | None
    job: str
    line: logformat.Line


@record
class Filter:
    since: float | None = None
    until: float | None = None
    pattern: object = None              # a compiled re, searched in the text
    stream: str | None = None           # "stderr": only stderr lines

    @property
    def timed(self) -> bool:
        return self.since is not None or self.until is not None

    def keeps(self, entry: Entry) -> bool:
        line, key = entry.line, entry.key
        if self.stream is not None and line.stream != self.stream:
            return False
        if key is None and self.timed:
            return False
        if (self.since is not None and key < self.since) or (self.until is not None and key > self.until):
            return False
        return self.pattern is None or self.pattern.search(line.text.decode("utf-8", "replace")) is not None


# ---------------------------------------------------------------- the time grammar


def when(text: str, now: float) -> float:
    """Seconds since the epoch that `text` names (see the module's docstring); ValueError
    (saying what is accepted) if it names none."""
    value = text.strip()
    lower = value.lower()
    if lower == "now":
        return now
    if lower in ("today", "yesterday"):
        return _midnight(now, -1 if lower == "yesterday" else 0)
    clock = _CLOCK_RE.fullmatch(value)
    if clock and int(clock[1]) < 24 and int(clock[2]) < 60 and int(clock[3] or 0) < 60:
        return _midnight(now, 0, int(clock[1]), int(clock[2]), int(clock[3] or 0))
    ago = _ago(lower[:-4].strip() if lower.endswith(" ago") else lower)
    if ago is not None:
        return now - ago
    moment = logformat.parse_time(value.encode("utf-8", "replace")) if value[:4].isdigit() else None
    if moment is None:
        raise ValueError(f"{text!r}: {WHEN_HELP}")
    return moment


def _ago(text: str) -> float | None:
    from .spec import SpecError, parse_duration

    if not text or not text[0].isdigit():
        return None
    try:
        return parse_duration(text)
    except SpecError:
        return None


def _midnight(now: float, days: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    """The local moment at hour:minute:second, `days` from the local day of `now` (mktime
    finds the offset, DST days included)."""
    today = time.localtime(now)
    return time.mktime((today.tm_year, today.tm_mon, today.tm_mday + days, hour, minute, second, 0, 0, -1))


# ---------------------------------------------------------------- reading


def log_files(folder: str, job: str | None = None) -> dict[str, str]:
    """job name -> path of its current log: every logs/NAME.log there is, by name; or the
    one job's (whether or not it exists yet), else those of its copies (a job with
    `instances` logs to JOB.0.log, JOB.1.log, ...)."""
    try:
        names = sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".log") and name[:-4])
    except FileNotFoundError:
        names = []
    if job is not None:
        copies = [] if job in names else sorted(
            (name for name in names if name.rpartition(".")[0] == job and name.rpartition(".")[2].isdigit()),
            key=lambda name: int(name.rpartition(".")[2]))
        names = copies or [job]
    return {name: os.path.join(folder, f"{name}.log") for name in names}


def last(files: dict[str, str], n: int, flt: Filter, unfinished: bool = True) -> tuple[list[Entry], dict]:
    """The last n entries of the current logs that pass flt, oldest first (logs without
    stamps first, job by job), and the Followers positioned after what was read, to
    follow on from there (then leave out the unfinished last lines: `unfinished`)."""
    unstamped, stamped, followers = [], [], {}
    for job, path in files.items():
        if flt.pattern is None and flt.stream is None:
            follower = followers[job] = logs.Follower(path)
            raw = follower.last(n) + ([follower.partial] if unfinished and follower.partial else [])
        else:
            follower = followers[job] = logs.Follower(path, from_start=True)
            raw = _drain(follower, unfinished)
        entries = deque((e for e in _entries(job, raw) if flt.keeps(e)), maxlen=n)
        (stamped if any(e.key is not None for e in entries) else unstamped).append(list(entries))
    merged = deque(heapq.merge(*stamped, key=_merge_key), maxlen=n)
    return [e for group in unstamped for e in group] + list(merged), followers


def window(files: dict[str, str], flt: Filter, keep: int | None = None,
           unfinished: bool = True) -> tuple[list[Entry], dict]:
    """Every entry in flt's time window (the last `keep` of them if given), rotated logs
    included, oldest first; and Followers of the current logs positioned after what was
    read."""
    streams, followers = [], {}
    for job, path in files.items():
        current = followers[job] = logs.Follower(path, from_start=True)
        streams.append(e for e in _history(job, current, flt.since, unfinished) if flt.keeps(e))
    merged = heapq.merge(*streams, key=_merge_key)
    return (list(deque(merged, maxlen=keep)) if keep is not None else list(merged)), followers


def _merge_key(entry: Entry) -> float:
    return entry.key if entry.key is not None else float("-inf")


def _history(job: str, current: logs.Follower, since: float | None, unfinished: bool):
    """The entries of a job's rotated logs, oldest first, then of its current log (read
    by `current`); rotated logs wholly before `since` are not read."""
    rotated, n = [], 1
    while os.path.exists(f"{current.path}.{n}"):
        rotated.append(f"{current.path}.{n}")
        n += 1
    for older in reversed(rotated):
        if since is None or _ends_after(older, since):
            yield from _entries(job, _drain(logs.Follower(older, from_start=True), True))
    yield from _entries(job, _drain(current, unfinished))


def _ends_after(path: str, since: float) -> bool:
    ends = [logformat.parse(line).ts for line in logs.Follower(path).last(20)]
    stamps = [ts for ts in ends if ts is not None]
    return not stamps or stamps[-1] >= since


def _drain(follower: logs.Follower, unfinished: bool) -> list[bytes]:
    """Every line from the follower's position to the end of its file, and the
    unfinished last one if `unfinished`."""
    lines = []
    while True:
        lines.extend(follower.read())
        if not follower.behind:
            break
    return lines + [follower.partial] if unfinished and follower.partial else lines


def _entries(job: str, raw_lines) -> list[Entry]:
    out, key = [], None
    for raw in raw_lines:
        line = logformat.parse(raw)
        key = line.ts if line.ts is not None else key
        out.append(Entry(key=key, job=job, line=line))
    return out


# ---------------------------------------------------------------- following


class Follow:
    """New entries of many logs as they are written, through one inotify instance; a log
    that cannot be watched (no inotify, its folder not made yet, no watches left) is
    looked at every POLL seconds. With `folder`, logs created there later are followed
    too."""

    POLL = 0.5

    def __init__(self, followers: dict, flt: Filter, folder: str | None = None):
        from .fswatch import FileWatches, open_watcher

        self.followers, self.flt, self.folder = dict(followers), flt, folder
        self.keys: dict[str, float | None] = {}
        watcher = open_watcher()
        self.watches = FileWatches(watcher) if watcher is not None else None
        self.changed: set[str] = set(self.followers)
        self.unwatched: set[str] = set(self.followers)     # jobs whose log (or folder) has no watch yet
        self.folder_watched = folder is None
        self._watch_all()

    def _watch_all(self) -> None:
        if self.watches is None:
            return
        for job in list(self.unwatched):
            try:
                self.watches.add(self.followers[job].path, lambda job=job: self.changed.add(job))
                self.unwatched.discard(job)
            except OSError:
                continue
        if not self.folder_watched:
            try:
                self.watches.add_folder(self.folder, self._rescan)
                self.folder_watched = True
            except OSError:
                pass

    def _rescan(self) -> None:
        for job, path in log_files(self.folder).items():
            if job not in self.followers:
                self.followers[job] = logs.Follower(path, from_start=True)
                self.unwatched.add(job)
                self.changed.add(job)
        self._watch_all()

    def entries(self):
        """Each new entry that passes the filter, forever (a generator that sleeps)."""
        import select

        while True:
            batch, jobs = [], sorted(self.changed)
            self.changed.clear()
            for job in jobs:
                batch.extend(self._read(job))          # a log read in part stays in changed
            yield from sorted(batch, key=_merge_key)
            if self.changed:
                continue
            polling = self.watches is None or self.unwatched or not self.folder_watched
            ready = select.select([self.watches] if self.watches else [], [], [], self.POLL if polling else None)[0]
            if ready:
                self.watches.dispatch()
            else:                                       # a look at what no watch covers
                self.changed.update(self.unwatched if self.watches else self.followers)
                if self.folder is not None:
                    self._rescan()
                self._watch_all()

    def _read(self, job: str) -> list[Entry]:
        follower = self.followers[job]
        out = []
        for raw in follower.read():
            line = logformat.parse(raw)
            key = self.keys[job] = line.ts if line.ts is not None else self.keys.get(job)
            entry = Entry(key=key, job=job, line=line)
            if self.flt.keeps(entry):
                out.append(entry)
        if follower.behind:
            self.changed.add(job)
        return out

    def close(self) -> None:
        if self.watches is not None:
            self.watches.close()
