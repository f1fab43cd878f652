"""Following a job's log file for the live tail (aios.logs.Follower, as the dashboard uses
it): the last lines, then whole new lines, across a copytruncate rotation and a file that
appears late; long lines are cut and CRs dropped before they are sent."""
from __future__ import annotations

import os

from aios.logs import Follower
from aios.web.logtail import FIRST_BYTES, LINE_LIMIT, _text, first_lines


def append(path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def texts(lines: list[bytes]) -> list[str]:
    return [_text(line) for line in lines]


def test_the_last_lines_then_whole_new_ones(tmp_path):
    log = tmp_path / "job.log"
    append(log, "one\ntwo\nthree\n")
    follower = Follower(str(log))
    assert texts(follower.last(2)) == ["two", "three"]
    assert follower.read() == []
    append(log, "four\nfi")
    assert texts(follower.read()) == ["four"]
    append(log, "ve\r\n<script>alert(1)</script>\n")
    assert texts(follower.read()) == ["five", "<script>alert(1)</script>"]


def test_rotation_and_a_late_file(tmp_path):
    log = tmp_path / "job.log"
    follower = Follower(str(log))
    assert follower.last(10) == [] and follower.read() == []
    append(log, "first\n")
    assert texts(follower.read()) == ["first"]
    append(log, "x" * 100 + "\n")
    follower.read()
    os.truncate(log, 0)                     # what logs.rotate_if_needed does after copying
    append(log, "after\n")
    assert texts(follower.read()) == ["after"]


def test_a_big_file_and_a_long_line(tmp_path):
    log = tmp_path / "job.log"
    append(log, "".join(f"line {i}\n" for i in range(60_000)))
    assert texts(Follower(str(log)).last(3)) == ["line 59997", "line 59998", "line 59999"]
    follower = Follower(str(log), max_line=LINE_LIMIT)
    follower.last(0)
    append(log, "y" * (LINE_LIMIT + 10) + "\nnext\n")
    assert texts(follower.read()) == ["y" * LINE_LIMIT + " [line cut]", "next"]


def test_the_first_message_holds_the_newest_lines_that_fit():
    lines = [b"x" * 1000] * 1000 + [b"newest"]
    first = first_lines(lines)
    assert first[-1] == "newest" and sum(len(line) + 1 for line in first) <= FIRST_BYTES
    assert len(first) == 1 + (FIRST_BYTES - len("newest\n")) // 1001
