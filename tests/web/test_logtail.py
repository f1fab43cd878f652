"""Following a job's log file for the live tail: the last lines, then whole new lines,
across a copytruncate rotation and a file that appears late."""
from __future__ import annotations

import os

from aios.web.logtail import LINE_LIMIT, TAIL_BYTES, LogFollower


def append(path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def test_the_last_lines_then_whole_new_ones(tmp_path):
    log = tmp_path / "job.log"
    append(log, "one\ntwo\nthree\n")
    follower = LogFollower(str(log))
    assert follower.start(2) == ["two", "three"]
    assert follower.read_new() == []
    append(log, "four\nfi")
    assert follower.read_new() == ["four"]
    append(log, "ve\r\n<script>alert(1)</script>\n")
    assert follower.read_new() == ["five", "<script>alert(1)</script>"]


def test_rotation_and_a_late_file(tmp_path):
    log = tmp_path / "job.log"
    follower = LogFollower(str(log))
    assert follower.start(10) == [] and follower.read_new() == []
    append(log, "first\n")
    assert follower.read_new() == ["first"]
    append(log, "x" * 100 + "\n")
    follower.read_new()
    os.truncate(log, 0)                     # what logs.rotate_if_needed does after copying
    append(log, "after\n")
    assert follower.read_new() == ["after"]


def test_a_big_file_and_a_long_line(tmp_path):
    log = tmp_path / "job.log"
    append(log, "".join(f"line {i}\n" for i in range(TAIL_BYTES // 5)))
    assert LogFollower(str(log)).start(3)[-1] == f"line {TAIL_BYTES // 5 - 1}"
    follower = LogFollower(str(log))
    follower.start(0)
    append(log, "y" * (LINE_LIMIT + 10) + "\n")
    assert follower.read_new() == ["y" * LINE_LIMIT + " [line cut]"]
