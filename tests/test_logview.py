"""logview: the --since/--until grammar (a table at fixed instants, DST days included),
the filter, and reading real files back: merged by time, raw logs, rotated logs, and
following many files (one of them created later) through one inotify instance."""
from __future__ import annotations

import re
import threading
import time

import pytest

from aios import logformat, logview
from aios.logview import Filter, when

from .test_logformat import zone  # noqa: F401  (a fixture: Europe/Berlin)

T = 1796148000.0          # 2026-12-01 19:00:00 in Berlin (18:00 UTC), a Tuesday


def local(*fields) -> float:
    return time.mktime((*fields, 0, 0, -1))


@pytest.mark.parametrize("text, expected", [
    ("now", T),
    ("30s", T - 30), ("10m", T - 600), ("2h", T - 7200), ("1d", T - 86400), ("1h30m", T - 5400),
    ("10m ago", T - 600), (" 2h ", T - 7200), ("1.5h", T - 5400),
    ("today", "2026-12-01 00:00"), ("yesterday", "2026-11-30 00:00"), ("Today", "2026-12-01 00:00"),
    ("18:00", "2026-12-01 18:00"), ("8:05", "2026-12-01 08:05"), ("18:00:30", "2026-12-01 18:00:30"),
    ("2026-11-29", "2026-11-29 00:00"), ("2026-11-29 18:00", "2026-11-29 18:00"),
    ("2026-11-29T18:00:05", "2026-11-29 18:00:05"), ("2026-11-29 18:00:05.250", "2026-11-29 18:00:05.25"),
    ("2026-11-29T17:00:05Z", "2026-11-29 18:00:05"), ("2026-11-29T18:00:05+01:00", "2026-11-29 18:00:05"),
])
def test_when(zone, text, expected):
    if isinstance(expected, str):
        day, _, clock = expected.partition(" ")
        clock, _, fraction = clock.partition(".")
        expected = local(*map(int, day.split("-")), *map(int, (clock + ":0").split(":")[:3]))
        expected += float(f"0.{fraction or 0}")
    assert when(text, T) == pytest.approx(expected, abs=1e-3)


def test_when_on_the_days_clocks_change(zone):
    """Midnight and a clock time are the local ones, whatever the offset that day."""
    sunday_after_spring = local(2026, 3, 29, 12, 0, 0)        # clocks went forward at 02:00
    assert when("today", sunday_after_spring) == local(2026, 3, 29, 0, 0, 0)
    assert when("03:30", sunday_after_spring) - when("01:30", sunday_after_spring) == 3600   # one hour went
    monday_after_autumn = local(2026, 10, 26, 12, 0, 0)
    assert when("yesterday", monday_after_autumn) == local(2026, 10, 25, 0, 0, 0)
    assert when("today", monday_after_autumn) - when("yesterday", monday_after_autumn) == 25 * 3600


@pytest.mark.parametrize("text", ["", "5 min", "yesterday 18:00", "25:00", "18:60", "2026-13-01", "-5m",
                                  "tomorrow", "1e3s", "2026-11-29 18:0:0:0", "\0", "\udcff"])
def test_when_refuses_with_what_it_takes(zone, text):
    with pytest.raises(ValueError, match=re.escape(logview.WHEN_HELP)):
        when(text, T)


def entry(ts, stream="stdout", text=b"x", job="j"):
    return logview.Entry(key=ts, job=job, line=logformat.Line(ts=ts, stream=stream, partial=False, text=text))


@pytest.mark.parametrize("flt, kept", [
    (Filter(), [True, True, True, True]),
    (Filter(since=10), [False, True, True, False]),
    (Filter(until=10), [True, True, False, False]),
    (Filter(since=6, until=15), [False, True, False, False]),
    (Filter(since=5, until=10), [True, True, False, False]),        # both ends included
    (Filter(stream="stderr"), [False, True, False, False]),
    (Filter(pattern=re.compile("ab+c")), [True, False, True, True]),
])
def test_filter(flt, kept):
    entries = [entry(5, text=b"abbc"), entry(10, "stderr", b"xyz"), entry(20, text=b"abc"),
               logview.Entry(key=None, job="j", line=logformat.Line(ts=None, stream=None, partial=False,
                                                                     text=b"raw abc"))]
    assert [flt.keeps(e) for e in entries] == kept


# ---------------------------------------------------------------- real files


def stamped(ts: float, stream: str, text: str) -> bytes:
    return logformat.head(logformat.timestamp(ts, "utc"), stream) + b"F " + text.encode() + b"\n"


@pytest.fixture
def folder(tmp_path):
    """Three logs: a and b stamped (interleaved in time), raw written unstamped; a was rotated."""
    (tmp_path / "a.log.2").write_bytes(stamped(T - 300, "stdout", "a0"))
    (tmp_path / "a.log.1").write_bytes(stamped(T - 200, "stdout", "a1") + b"a raw line after a1\n")
    (tmp_path / "a.log").write_bytes(stamped(T - 20, "stdout", "a2") + stamped(T - 5, "stderr", "a3 failed"))
    (tmp_path / "b.log").write_bytes(stamped(T - 30, "stdout", "b1") + stamped(T - 10, "stderr", "b2 failed")
                                     + stamped(T - 1, "stdout", "b3"))
    (tmp_path / "raw.log").write_bytes(b"plain one\nplain two\nunfinished")
    (tmp_path / "not-a-log.txt").write_bytes(b"x\n")
    return tmp_path


def texts(entries) -> list[tuple[str, str]]:
    return [(e.job, e.line.text.decode()) for e in entries]


def test_log_files(folder):
    assert list(logview.log_files(str(folder))) == ["a", "b", "raw"]
    assert logview.log_files(str(folder), "zz") == {"zz": str(folder / "zz.log")}
    assert logview.log_files(str(folder / "missing")) == {}


def test_last_merges_by_time_with_raw_logs_first(folder):
    entries, followers = logview.last(logview.log_files(str(folder)), 50, Filter())
    assert texts(entries) == [("raw", "plain one"), ("raw", "plain two"), ("raw", "unfinished"),
                              ("b", "b1"), ("a", "a2"), ("b", "b2 failed"), ("a", "a3 failed"), ("b", "b3")]
    assert texts(logview.last(logview.log_files(str(folder)), 2, Filter())[0])[-2:] == [
        ("a", "a3 failed"), ("b", "b3")]
    assert set(followers) == {"a", "b", "raw"}
    entries, _ = logview.last(logview.log_files(str(folder)), 50, Filter(), unfinished=False)
    assert ("raw", "unfinished") not in texts(entries)     # -f prints it once it is finished


def test_last_with_filters_reads_whole_logs(folder):
    flt = Filter(stream="stderr")
    assert texts(logview.last(logview.log_files(str(folder)), 50, flt)[0]) == [("b", "b2 failed"), ("a", "a3 failed")]
    flt = Filter(pattern=re.compile(r"^b\d$"))
    assert texts(logview.last(logview.log_files(str(folder)), 1, flt)[0]) == [("b", "b3")]


def test_a_window_reads_rotated_logs_and_leaves_raw_ones_out(folder):
    files = logview.log_files(str(folder))
    entries, _ = logview.window(files, Filter(since=T - 250))
    assert texts(entries) == [("a", "a1"), ("a", "a raw line after a1"), ("b", "b1"), ("a", "a2"),
                              ("b", "b2 failed"), ("a", "a3 failed"), ("b", "b3")]
    entries, _ = logview.window(files, Filter(until=T - 15))
    assert texts(entries) == [("a", "a0"), ("a", "a1"), ("a", "a raw line after a1"), ("b", "b1"), ("a", "a2")]
    entries, _ = logview.window(files, Filter(since=T - 250), keep=2)
    assert texts(entries) == [("a", "a3 failed"), ("b", "b3")]


def test_following_many_logs_and_one_that_appears(folder):
    files = logview.log_files(str(folder))
    _, followers = logview.last(files, 1, Filter(), unfinished=False)
    follow = logview.Follow(followers, Filter(), folder=str(folder))
    got, done = [], threading.Event()

    def collect():
        for e in follow.entries():
            got.append((e.job, e.line.text.decode()))
            if len(got) == 4:
                done.set()
                return

    threading.Thread(target=collect, daemon=True).start()
    with open(folder / "a.log", "ab") as f:
        f.write(stamped(T, "stdout", "a4"))
    with open(folder / "raw.log", "ab") as f:
        f.write(b" now\n")                       # the unfinished line, finished
    (folder / "new.log").write_bytes(stamped(T + 1, "stdout", "new1"))
    with open(folder / "b.log", "ab") as f:
        f.write(stamped(T + 2, "stderr", "b4"))
    assert done.wait(30), got
    assert sorted(got) == [("a", "a4"), ("b", "b4"), ("new", "new1"), ("raw", "unfinished now")]


def test_following_only_stderr(folder):
    _, followers = logview.last({"b": str(folder / "b.log")}, 1, Filter())
    follow = logview.Follow(followers, Filter(stream="stderr"))
    with open(folder / "b.log", "ab") as f:
        f.write(stamped(T, "stdout", "quiet") + stamped(T, "stderr", "loud"))
    entries = follow.entries()
    assert next(entries).line.text == b"loud"
    follow.close()


def test_a_log_full_of_long_and_odd_lines(tmp_path):
    """Lines longer than logs.MAX_LINE are cut, bytes that are not UTF-8 survive."""
    path = tmp_path / "odd.log"
    path.write_bytes(stamped(T, "stdout", "x" * (2 * 1024 * 1024)) + stamped(T + 1, "stderr", "after")
                     + b"\xff\xfe raw\n")
    entries, _ = logview.window({"odd": str(path)}, Filter(since=T - 1))
    assert [len(e.line.text) < 1024 * 1024 + 100 for e in entries] == [True, True, True]
    assert [e.line.text for e in entries[1:]] == [b"after", b"\xff\xfe raw"]   # raw: with the line above
    entries, _ = logview.last({"odd": str(path)}, 5, Filter())
    assert entries[-1].line.text == b"\xff\xfe raw" and entries[-1].key == pytest.approx(T + 1)


def test_following_a_log_whose_folder_comes_later(tmp_path):
    """No folder to watch yet: looked at every POLL seconds, then watched once it exists."""
    folder = tmp_path / "logs"
    _, followers = logview.last(logview.log_files(str(folder), "late"), 1, Filter(), unfinished=False)
    follow = logview.Follow(followers, Filter())
    got, done = [], threading.Event()

    def collect():
        for e in follow.entries():
            got.append(e.line.text)
            if len(got) == 2:
                done.set()
                return

    threading.Thread(target=collect, daemon=True).start()
    folder.mkdir()
    (folder / "late.log").write_bytes(stamped(T, "stdout", "first"))
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(folder / "late.log", "ab") as f:
        f.write(stamped(T, "stdout", "second"))
    assert done.wait(30), got
    assert got == [b"first", b"second"]
    assert not follow.unwatched                  # watched by now, no longer polled


def test_a_job_with_copies_is_read_by_its_name(tmp_path):
    """A job with `instances` logs to JOB.0.log, JOB.1.log ...: its name reads them all
    (in copy order), unless a log of that very name exists."""
    for name in ("web.0", "web.1", "web.10", "web.2", "webby", "web.x"):
        (tmp_path / f"{name}.log").write_bytes(b"")
    assert list(logview.log_files(str(tmp_path), "web")) == ["web.0", "web.1", "web.2", "web.10"]
    assert list(logview.log_files(str(tmp_path), "nothing")) == ["nothing"]
    (tmp_path / "web.log").write_bytes(b"")
    assert list(logview.log_files(str(tmp_path), "web")) == ["web"]
