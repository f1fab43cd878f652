"""logs: real files, and a real child appending while the file is rotated."""
from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from aios import logs

LIVENESS = 30.0


@contextmanager
def deadline(seconds: float = LIVENESS):
    """Fail instead of hanging if the block (e.g. next() on follow) never returns."""
    def expired(*_):
        raise AssertionError(f"no result within {seconds} s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def wait_until(condition, timeout=LIVENESS):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, f"condition not met within {timeout} s"
        time.sleep(0.01)


def append(path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


# ---------------------------------------------------------------- open_log


def test_open_log_creates_folders_and_appends(tmp_path):
    path = tmp_path / "logs" / "deep" / "job.log"
    fd = logs.open_log(str(path))
    try:
        os.write(fd, b"one\n")
        fd2 = logs.open_log(str(path))
        os.write(fd2, b"two\n")
        os.close(fd2)
        os.write(fd, b"three\n")
    finally:
        os.close(fd)
    assert path.read_text() == "one\ntwo\nthree\n"
    assert stat.S_IMODE(path.stat().st_mode) & ~0o640 == 0
    assert stat.S_IMODE(path.parent.stat().st_mode) & ~0o750 == 0


def test_open_log_fd_is_close_on_exec(tmp_path):
    fd = logs.open_log(str(tmp_path / "job.log"))
    try:
        assert not os.get_inheritable(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- rotation


def test_no_rotation_below_the_limit_or_without_a_file(tmp_path):
    path = tmp_path / "job.log"
    assert not logs.rotate_if_needed(str(path), 100, 3)
    path.write_text("x" * 100)
    assert not logs.rotate_if_needed(str(path), 100, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.log"]


def test_rotation_shifts_copies_and_drops_the_oldest(tmp_path):
    path = str(tmp_path / "job.log")
    for i in range(5):
        with open(path, "w") as f:
            f.write(f"gen{i}\n" * 10)
        assert logs.rotate_if_needed(path, 10, 2)
        assert os.path.getsize(path) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["job.log", "job.log.1", "job.log.2"]
    assert open(path + ".1").read().startswith("gen4")
    assert open(path + ".2").read().startswith("gen3")


def test_keep_zero_truncates_without_copies(tmp_path):
    path = tmp_path / "job.log"
    path.write_text("y" * 50)
    assert logs.rotate_if_needed(str(path), 10, 0)
    assert path.stat().st_size == 0
    assert [p.name for p in tmp_path.iterdir()] == ["job.log"]


WRITER = """
import os, sys, time
fd, i = int(sys.argv[1]), 0
while True:
    os.write(fd, b"line %08d %s\\n" % (i, b"x" * 40))
    i += 1
    time.sleep(0.0005)
"""
LINE = re.compile(r"line (\d{8}) x{40}")


def test_rotation_while_a_child_appends_stays_bounded(tmp_path):
    path = str(tmp_path / "job.log")
    fd = logs.open_log(path)
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(fd)], pass_fds=(fd,))
    os.close(fd)
    max_bytes, keep, slack = 4096, 3, 256 * 1024
    try:
        rotations = 0
        while rotations < 12:
            wait_until(lambda: os.path.getsize(path) > max_bytes)
            assert logs.rotate_if_needed(path, max_bytes, keep)
            rotations += 1
            files = sorted(os.listdir(tmp_path))
            assert len(files) <= keep + 1 and f"job.log.{keep + 1}" not in files
            assert sum(os.path.getsize(tmp_path / f) for f in files) <= (keep + 1) * slack
        wait_until(lambda: os.path.getsize(path) > 0)
    finally:
        child.kill()
        child.wait()
    for name in os.listdir(tmp_path):
        check_whole_increasing_lines((tmp_path / name).read_text())


def check_whole_increasing_lines(text: str) -> None:
    """No NUL hole (the writer kept appending at the new end) and no torn line."""
    assert "\0" not in text
    numbers = []
    for line in text.splitlines():
        match = LINE.fullmatch(line)
        assert match, f"torn or garbled line {line!r}"
        numbers.append(int(match.group(1)))
    assert numbers == sorted(set(numbers))


# ---------------------------------------------------------------- tail


def test_tail_of_a_large_file(tmp_path):
    path = tmp_path / "big.log"
    with open(path, "w") as f:
        for i in range(200_000):
            f.write(f"line {i}\n")
    assert logs.tail(str(path), 3) == ["line 199997", "line 199998", "line 199999"]
    assert logs.tail(str(path), 1) == ["line 199999"]
    assert len(logs.tail(str(path), 50_000)) == 50_000
    assert logs.tail(str(path), 0) == []


def test_tail_reads_backwards_not_the_whole_file(tmp_path):
    path = tmp_path / "sparse.log"
    with open(path, "wb") as f:
        f.truncate(64 * 1024 ** 3)      # a 64 GiB hole: reading it all would not end
        f.seek(0, os.SEEK_END)
        f.write(b"\nlast but one\nlast\n")
    with deadline():
        assert logs.tail(str(path), 2) == ["last but one", "last"]


def test_tail_small_and_odd_files(tmp_path):
    path = tmp_path / "odd.log"
    assert logs.tail(str(path), 5) == []
    path.write_bytes(b"a\nb\nno newline at end")
    assert logs.tail(str(path), 2) == ["b", "no newline at end"]
    assert logs.tail(str(path), 10) == ["a", "b", "no newline at end"]
    path.write_bytes(b"ok\nbad \xff\xfe bytes\n")
    assert logs.tail(str(path), 1) == ["bad \ufffd\ufffd bytes"]
    path.write_bytes(b"")
    assert logs.tail(str(path), 3) == []


# ---------------------------------------------------------------- follow


def test_follow_sees_appended_lines_only(tmp_path):
    path = tmp_path / "job.log"
    path.write_text("old 1\nold 2\n")
    lines = logs.follow(str(path))
    append(path, "new 1\nnew 2\n")
    with deadline():
        assert [next(lines), next(lines)] == ["new 1", "new 2"]
    append(path, "par")
    append(path, "tial\n")
    with deadline():
        assert next(lines) == "partial"


def test_follow_survives_truncation(tmp_path):
    path = tmp_path / "job.log"
    path.write_text("x" * 1000 + "\n")
    lines = logs.follow(str(path))
    append(path, "before\n")
    with deadline():
        assert next(lines) == "before"
    os.truncate(path, 0)
    append(path, "after\n")
    with deadline():
        assert next(lines) == "after"


def test_follow_survives_copytruncate_rotation(tmp_path):
    path = str(tmp_path / "job.log")
    fd = logs.open_log(path)
    try:
        os.write(fd, b"a" * 200 + b"\n")
        lines = logs.follow(path)
        os.write(fd, b"one\n")
        with deadline():
            assert next(lines) == "one"
        assert logs.rotate_if_needed(path, 10, 2)
        os.write(fd, b"two\n")
        with deadline():
            assert next(lines) == "two"
    finally:
        os.close(fd)


def test_follow_a_file_that_does_not_exist_yet(tmp_path):
    path = tmp_path / "later.log"
    lines = logs.follow(str(path))
    path.write_text("first\nsecond\n")
    with deadline():
        assert [next(lines), next(lines)] == ["first", "second"]


def _write_later(path, data: bytes, after: float, mode: str = "ab") -> threading.Thread:
    def write():
        time.sleep(after)
        with open(path, mode) as f:
            f.write(data)
    thread = threading.Thread(target=write)
    thread.start()
    return thread


def _timed_wait(follower, timeout):
    started = time.monotonic()
    follower.wait(timeout)
    return time.monotonic() - started


@pytest.fixture
def follower(tmp_path):
    path = tmp_path / "job.log"
    path.write_text("old\n")
    follower = logs.Follower(str(path))
    follower.wait(0)                 # the first wait sets up the watch and returns at once
    if not follower._watch:
        pytest.skip("no inotify here: followers look every 100 ms instead")
    yield follower
    follower.close()


def test_a_follower_sleeps_until_its_file_is_written(follower):
    """Event-driven, not polled: a wait with a long timeout ends when the line is
    written (0.3 s later), not before and not at its timeout."""
    writer = _write_later(follower.path, b"new\n", 0.3)
    took = _timed_wait(follower, 60)
    writer.join()
    assert 0.25 <= took < 30
    assert follower.read() == [b"new"]


def test_a_follower_is_not_woken_by_other_files_in_its_folder(follower, tmp_path):
    writer = _write_later(tmp_path / "other.log", b"noise\n" * 1000, 0.05)
    assert _timed_wait(follower, 0.5) >= 0.45
    writer.join()
    assert follower.read() == []


def test_a_follower_wakes_when_its_file_is_replaced(follower, tmp_path):
    fresh = tmp_path / "fresh"
    fresh.write_text("replaced\n")
    threading.Timer(0.2, os.rename, (fresh, follower.path)).start()
    assert 0.15 <= _timed_wait(follower, 60) < 30
    assert follower.read() == [b"replaced"]
    writer = _write_later(follower.path, b"after\n", 0.2)    # the new file is watched too
    assert 0.15 <= _timed_wait(follower, 60) < 30
    writer.join()
    assert follower.read() == [b"after"]


def test_a_follower_returns_when_another_fd_is_readable(follower):
    reader, writer = socket.socketpair()
    with reader, writer:
        threading.Timer(0.2, writer.send, (b"x",)).start()
        started = time.monotonic()
        assert follower.wait(60, also=(reader,)) == [reader]
        assert time.monotonic() - started < 30


def test_a_follower_behind_its_file_does_not_wait(tmp_path):
    """read() takes at most _FOLLOW_CHUNK bytes: the rest must not wait for another write."""
    path = tmp_path / "big.log"
    follower = logs.Follower(str(path), max_line=2 * logs._FOLLOW_CHUNK)
    follower.wait(0)
    path.write_bytes(b"x" * (logs._FOLLOW_CHUNK + 10) + b"\nend\n")
    follower.wait(0)                 # takes the write's events
    follower.read()
    assert follower.behind
    assert _timed_wait(follower, 60) < 30
    assert follower.read() == [b"x" * (logs._FOLLOW_CHUNK + 10), b"end"]
    follower.close()


def test_a_flooded_log_is_truncated_and_keeps_only_its_tail(tmp_path):
    """A log that passed max_bytes by far (a job writing faster than rotation looks)
    costs one bounded copy: PATH.1 holds its last lines after a line saying how much
    was dropped, whatever the log had grown to."""
    path = tmp_path / "job.log"
    path.write_bytes(b"".join(b"line %08d\n" % i for i in range(400_000)))   # 5.6 MB
    assert logs.rotate_if_needed(str(path), 100_000, 2)
    assert path.stat().st_size == 0
    head, _, kept = (tmp_path / "job.log.1").read_bytes().partition(b"\n")
    dropped = int(head.split()[1])
    assert head == b"[aios: %d bytes of output dropped: the job wrote faster than its log is rotated]" % dropped
    assert len(kept) <= 100_000 and kept.endswith(b"line 00399999\n") and kept.startswith(b"line ")
    assert dropped + len(kept) == 400_000 * 14


# ---------------------------------------------------------------- lines of any length

def test_a_line_longer_than_max_line_is_cut_as_soon_as_it_is_that_long(tmp_path):
    path = tmp_path / "job.log"
    path.write_bytes(b"")
    follower = logs.Follower(str(path), max_line=10, chunk=4)
    append(path, "abcdefgh")
    assert [follower.read(), follower.read(), follower.read()] == [[], [], []]     # 8 bytes: still a line
    append(path, "ijklmnopqrstuvwxyz\nnext\nlast")
    found = []
    while True:
        got = follower.read()
        found += got
        if not follower.behind:
            break
    assert found == [b"abcdefghij" + logs.CUT_MARK, b"next"]
    assert follower.partial == b"last" and len(follower.partial) <= 10


def test_the_last_lines_of_a_file_of_long_lines_are_read_from_a_bounded_tail(tmp_path):
    path = tmp_path / "job.log"
    path.write_bytes(b"a" * 100_000 + b"\n" + b"b" * 50 + b"\n" + b"c" * 100_000 + b"\nend\n")
    follower = logs.Follower(str(path), max_line=1000)
    assert follower.last(3) == [b"end"], "4 lines of max_line bytes are read back, from inside the c line"
    assert follower.last(120) == [b"b" * 50, b"c" * 1000 + logs.CUT_MARK, b"end"], \
        "121 lines of max_line bytes reach into the a line, whose end is not a line"
    assert logs.tail(str(path), 2) == ["c" * 100_000, "end"], "the CLI's tail keeps lines up to MAX_LINE"


def test_a_newline_free_log_costs_bounded_memory(tmp_path):
    """200 MB without a newline, followed from its start: the follower keeps at most
    max_line bytes and each read at most a chunk (the old one joined its unfinished line
    to each new block: quadratic in time and as large as the file in memory)."""
    import tracemalloc

    path = tmp_path / "flood.log"
    path.write_bytes(b"")
    follower = logs.Follower(str(path), max_line=16 * 1024, chunk=256 * 1024)
    os.truncate(path, 200 << 20)            # 200 MB of NUL bytes, none a newline
    tracemalloc.start()
    lines, reads = [], 0
    try:
        while True:
            lines += follower.read()
            reads += 1
            if not follower.behind:
                break
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert lines == [b"\0" * (16 * 1024) + logs.CUT_MARK] and follower.pos == 200 << 20
    assert reads == (200 << 20) // (256 * 1024)
    assert peak < 2 * 256 * 1024 + (1 << 20), f"peak {peak} bytes"


# ---------------------------------------------------------------- last_words


def _stamped(stream: str, text: str) -> bytes:
    return b"2026-12-01T18:00:00.000Z " + stream.encode() + b" F " + text.encode() + b"\n"


@pytest.mark.parametrize("content, words", [
    (None, None),                                                     # no log yet
    (b"", None),
    (b"\n\n", None),
    (b"".join(_stamped("stdout", f"out{i}") for i in range(5)),       # no stderr: the last lines
     {"stream": None, "lines": ["out2", "out3", "out4"]}),
    (_stamped("stderr", "Traceback (most recent call last):") + _stamped("stderr", '  File "x.py"')
     + _stamped("stderr", "OSError: [Errno 98] Address already in use") + _stamped("stdout", "shutting down"),
     {"stream": "stderr", "lines": ["Traceback (most recent call last):", '  File "x.py"',
                                    "OSError: [Errno 98] Address already in use"]}),
    (_stamped("stderr", "only one") + _stamped("stdout", "after"), {"stream": "stderr", "lines": ["only one"]}),
    (b"raw one\nraw two\r\nraw three\nraw four", {"stream": None, "lines": ["raw two", "raw three", "raw four"]}),
    (_stamped("stderr", "x" * 1000), {"stream": "stderr", "lines": ["x" * logs.REASON_WIDTH]}),
    (b"\xff\xfe bad bytes\n", {"stream": None, "lines": ["\ufffd\ufffd bad bytes"]}),
])
def test_last_words(tmp_path, content, words):
    path = tmp_path / "job.log"
    if content is not None:
        path.write_bytes(content)
    assert logs.last_words(str(path)) == words


def test_last_words_reads_only_the_end(tmp_path):
    """An old stderr line more than REASON_BYTES back is not found, and the line the
    window begins inside is not shown cut."""
    path = tmp_path / "job.log"
    path.write_bytes(_stamped("stderr", "long ago") + _stamped("stdout", "y" * (logs.REASON_BYTES + 10))
                     + _stamped("stdout", "recent"))
    assert logs.last_words(str(path)) == {"stream": None, "lines": ["recent"]}
    with open(path, "ab") as f:
        f.write(b"z" * (50 * 1024 * 1024))           # a huge log: still one bounded read
    assert logs.last_words(str(path))["lines"] == ["z" * logs.REASON_WIDTH]
