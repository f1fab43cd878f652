"""Stamped job logs on a real daemon (`aios up -d`): a job writing numbered lines keeps
every line, once and in order, across kill -9 of its daemon, the next daemon's adoption,
a re-exec and the end of its log writer; `down` leaves its last lines in the log and no
writer behind; rotation keeps stamped files whole."""
from __future__ import annotations

import json
import os
import signal
import sys

from ..test_logwriter import COUNTER, numbers, records, writer_pids
from .conftest import pid_alive, wait_until, write_home
from .test_cli import aios, daemon, ok, status  # noqa: F401  (daemon is a fixture)

STAMPED = f"""
[logs]
timestamps = "utc"

[jobs.count]
type = "always"
command = {json.dumps([sys.executable, "-c", COUNTER])}
"""


def grown(log, by: int = 100) -> None:
    before = len(numbers(log))
    wait_until(lambda: len(numbers(log)) >= before + by, what=f"{by} more lines in {log.name}")


def job_pid(home) -> int:
    return wait_until(lambda: status(home)["count"]["pid"] if status(home)["count"]["status"] == "running"
                      else None, what="count running")


def test_every_line_once_across_kill_9_adoption_reexec_and_a_writer_death(home, daemon):
    write_home(home, STAMPED)
    log = home / "logs" / "count.log"
    first = daemon.up()
    pid = job_pid(home)
    grown(log)
    os.kill(first, signal.SIGKILL)                         # the daemon dies; job and writer go on
    wait_until(lambda: not pid_alive(first), what="the daemon gone")
    grown(log)
    daemon.up()
    assert job_pid(home) == pid
    grown(log)
    ok(aios(home, "reexec"))
    assert job_pid(home) == pid
    grown(log)
    [writer] = writer_pids(home)
    os.kill(writer, signal.SIGKILL)                        # the writer dies: the daemon starts another
    wait_until(lambda: writer_pids(home) not in ([], [writer]), what="a new log writer")
    grown(log)
    assert job_pid(home) == pid, "the job died or was restarted"
    daemon.down()
    wait_until(lambda: not writer_pids(home), what="the writer to exit after down")
    seen = numbers(log)
    assert seen == sorted(set(seen)), "a line written twice, or out of order"
    lost = set(range(seen[-1] + 1)) - set(seen)
    assert len(lost) < 64 * 1024 // 2, "more lost than the one chunk the killed writer held"
    errors = numbers(log, "stderr")
    assert errors == sorted(set(errors)) and all(n % 10 == 0 for n in errors)


def test_down_leaves_the_last_lines_and_a_raw_home_stays_raw(home, daemon):
    write_home(home, """
        [logs]
        timestamps = "local"
        [jobs.say]
        type = "trigger"
        command = ["sh", "-c", "echo out; echo err >&2; printf last"]
        [jobs.raw]
        type = "trigger"
        command = ["sh", "-c", "echo plain"]
        """)
    daemon.up()
    assert aios(home, "trigger", "say", "--wait").returncode == 0
    daemon.down()
    lines = records(home / "logs" / "say.log")
    assert sorted((ln.stream, ln.text) for ln in lines) == [("stderr", b"err"), ("stdout", b"last"),
                                                           ("stdout", b"out")]
    assert not writer_pids(home)
    write_home(home, '[jobs.raw]\ntype = "trigger"\ncommand = ["sh", "-c", "echo plain"]\n')
    daemon.up()
    assert aios(home, "trigger", "raw", "--wait").returncode == 0
    assert (home / "logs" / "raw.log").read_text() == "plain\n"     # no [logs] timestamps: as before
    assert not writer_pids(home)


def test_rotation_keeps_stamped_records_whole(home, daemon):
    write_home(home, STAMPED.replace('timestamps = "utc"', 'timestamps = "utc"\nmax_size = "64KB"\nkeep = 2'))
    daemon.up()
    log = home / "logs" / "count.log"
    wait_until(lambda: os.path.exists(f"{log}.2"), what="two rotations")
    daemon.down()
    for path in (f"{log}.2", f"{log}.1", log):
        lines = records(path)
        assert lines and all(ln.stream in ("stdout", "stderr") for ln in lines[1:]), path
        assert all(ln.ts is not None for ln in lines if ln.stream), path
    assert (home / "logs" / "count.log.1").stat().st_size < 4 * 64 * 1024


# ================================================================ aios logs

LOGS = """
[logs]
timestamps = "local"

[jobs.web]
type = "always"
command = ["sh", "-c", "echo listening on 8787; exec sleep 100000"]

[jobs.bind]
type = "trigger"
command = ["sh", "-c", "echo binding; echo 'OSError: Address already in use' >&2; exit 2"]

[jobs.later]
type = "trigger"
command = ["sh", "-c", "echo later $1", "later"]
"""
MOMENT = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"


def test_aios_logs_over_every_job(home, daemon):
    import re

    from .test_cli import popen_aios, read_until, terminate

    write_home(home, LOGS)
    (home / "logs").mkdir()
    (home / "logs" / "old.log").write_text("written before stamps\n")
    daemon.up()
    assert aios(home, "trigger", "bind", "--wait").returncode == 2
    wait_until(lambda: "listening" in (home / "logs" / "web.log").read_text(), what="web's line")

    lines = ok(aios(home, "logs")).splitlines()
    assert lines[0] == "old  written before stamps"                       # no time: first, as it is
    assert sorted(re.sub(MOMENT, "T", line) for line in lines[1:]) == [
        "T bind err OSError: Address already in use", "T bind out binding", "T web  out listening on 8787"]
    single = ok(aios(home, "logs", "bind")).splitlines()
    assert sorted(re.sub(MOMENT, "T", line) for line in single) == [
        "T err OSError: Address already in use", "T out binding"]

    objects = [json.loads(line) for line in ok(aios(home, "logs", "--json")).splitlines()]
    assert {(o["job"], o["stream"], o["text"]) for o in objects} == {
        ("old", None, "written before stamps"), ("bind", "stdout", "binding"),
        ("bind", "stderr", "OSError: Address already in use"), ("web", "stdout", "listening on 8787")}
    assert all(set(o) == {"ts", "job", "stream", "text"} for o in objects)

    only = aios(home, "logs", "--stderr")
    assert only.returncode == 0 and [re.sub(MOMENT, "T", ln) for ln in only.stdout.splitlines()] == [
        "T bind err OSError: Address already in use"]
    assert "old.log has no timestamps" in only.stderr and "--stderr cannot choose" in only.stderr
    found = aios(home, "logs", "--since", "10m", "--grep", "Address|listening")
    assert sorted(re.sub(MOMENT, "T", ln) for ln in found.stdout.splitlines()) == [
        "T bind err OSError: Address already in use", "T web  out listening on 8787"]
    assert "a time window cannot choose" in found.stderr
    assert ok(aios(home, "logs", "--until", "1h")) == ""                  # nothing that old (old.log has no time)
    assert ok(aios(home, "logs", "--since", "yesterday", "-n", "1")).count("\n") == 1

    follow = popen_aios(home, "logs", "-f", "-n", "1")
    try:
        seen: list[str] = []
        read_until(follow, "\n", seen)
        ok(aios(home, "trigger", "later", "first", "--wait"))             # a log that did not exist
        read_until(follow, "later out later first", seen)
        assert aios(home, "trigger", "bind", "--wait").returncode == 2
        text = read_until(follow, "bind err OSError", seen)
    finally:
        terminate(follow)
    assert re.search(MOMENT + r" later out later first\n", text), text


def test_aios_logs_usage_errors(home):
    write_home(home, LOGS)
    for args, message in [(("--since", "5 min"), "--since '5 min': use a duration ago"),
                          (("--until", "1h", "-f"), "--until and -f do not go together"),
                          (("--grep", "("), "--grep '(' is not a regular expression"),
                          (("../x",), "'../x' is not a job name")]:
        result = aios(home, "logs", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    missing = aios(home, "logs", "nope")
    assert missing.returncode == 1 and "no log for job 'nope' yet" in missing.stderr


# ================================================================ failures that speak

CRASHING = """
[logs]
timestamps = "local"

[jobs.web]
type = "always"
retries = 2
backoff = "10ms"
command = ["sh", "-c", "echo starting on 8787; echo 'OSError: [Errno 98] Address already in use' >&2; echo bye; exit 2"]

[jobs.quiet]
type = "always"
command = ["sleep", "100000"]
"""


def test_status_shows_why_a_job_failed_in_its_own_words(home, daemon):
    write_home(home, CRASHING)
    daemon.up()
    said = ["OSError: [Errno 98] Address already in use"] * 2       # two runs, each its line on stderr
    wait_until(lambda: status(home)["web"]["status"] == "failed"
               and (status(home)["web"]["log_tail"] or {}).get("lines") == said, what="web failed, in its words")
    web, quiet = status(home)["web"], status(home)["quiet"]
    assert web["log_tail"] == {"stream": "stderr", "lines": said}
    assert "log_tail" not in quiet                            # only failed and backoff jobs are read
    table = aios(home, "status")
    assert table.returncode == 4
    row = next(line for line in table.stdout.splitlines() if line.startswith("web "))
    assert row.endswith("; stderr: OSError: [Errno 98] Address already in use"), row
    one = aios(home, "status", "web").stdout.splitlines()
    assert one[-3:] == [f"last stderr lines of {home}/logs/web.log:"] + [f"  {line}" for line in said]
    detail = aios(home, "status", "web", "--json")
    assert json.loads(detail.stdout)[0]["log_tail"]["lines"][-1] == "OSError: [Errno 98] Address already in use"
    daemon.down()
    down = aios(home, "status", "web")                        # the daemon down: read from the files
    assert down.returncode == 3
    assert "  OSError: [Errno 98] Address already in use" in down.stdout


def test_a_run_from_the_zygote_has_its_streams_stamped_apart(home, daemon):
    write_home(home, """
        [logs]
        timestamps = "utc"
        [jobs.say]
        type = "trigger"
        program = "say.py:main"
        """, {"say.py": "import sys\n\ndef main():\n    print('out', flush=True)\n    print('err', file=sys.stderr)\n"})
    daemon.up()

    def forked_run() -> bool:   # a run asked for while the zygote still starts is spawned
        assert aios(home, "trigger", "say", "--wait").returncode == 0
        return status(home)["say"]["started"] == "zygote"

    wait_until(forked_run, what="a run forked from the zygote")
    daemon.down()
    lines = sorted((ln.stream, ln.text) for ln in records(home / "logs" / "say.log"))
    runs = len(lines) // 2
    assert runs >= 1 and lines == [("stderr", b"err")] * runs + [("stdout", b"out")] * runs
