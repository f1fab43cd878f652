"""aios.oplog: the daemon's orchestrator.log, with real files."""
from __future__ import annotations

import io
import os
import re

from aios.oplog import open_oplog

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


def test_each_line_goes_to_the_file_and_to_stderr_with_its_time(tmp_path):
    stream = io.StringIO()
    log = open_oplog(tmp_path, 1 << 20, 3, stream)
    log("daemon_started -: pid 1")
    log("bad text \udcff")
    lines = (tmp_path / "orchestrator.log").read_text().splitlines()
    assert re.fullmatch(STAMP + "daemon_started -: pid 1", lines[0])
    assert re.fullmatch(STAMP + "bad text \\?", lines[1]), "a lone surrogate is replaced, never raised"
    assert stream.getvalue().splitlines()[0] == lines[0]


def test_a_stream_that_is_the_log_itself_gets_each_line_once(tmp_path):
    """As under `aios up -d`, whose stderr is orchestrator.log."""
    with open(tmp_path / "orchestrator.log", "a") as stderr:
        log = open_oplog(tmp_path, 1 << 20, 3, stderr)
        log("once")
    assert len((tmp_path / "orchestrator.log").read_text().splitlines()) == 1


def test_it_rotates_by_size_like_job_logs(tmp_path):
    log = open_oplog(tmp_path, 1000, 2, io.StringIO())
    for n in range(200):
        log(f"event number {n:04d} " + "x" * 30)
    path = tmp_path / "orchestrator.log"
    assert path.stat().st_size <= 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orchestrator.log", "orchestrator.log.1",
                                                           "orchestrator.log.2"]
    assert "event number 0199" in path.read_text().splitlines()[-1]
    assert os.stat(tmp_path / "orchestrator.log.1").st_size > 1000


def test_a_home_that_cannot_hold_the_log_leaves_stderr(tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    stream = io.StringIO()
    log = open_oplog(tmp_path / "not-a-folder", 1000, 2, stream)
    log("still said")
    assert re.fullmatch(STAMP + "still said\n", stream.getvalue())
