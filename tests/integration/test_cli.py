"""The `aios` CLI as a user runs it: `python -m aios --home HOME ...` subprocesses against a
real daemon started with `aios up -d`, real job processes and real files. Conditions are
awaited with generous timeouts; nothing asserts on speed."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aios import control

from .conftest import LIVENESS, ROOT, events, pid_alive, processes_with_home, runs, wait_until, write_home

_ENV = {k: v for k, v in os.environ.items() if k not in ("AIOS_HOME", "DEVICE_TAGS", "NO_COLOR")}
HEADERS = ["NAME", "TYPE", "STATUS", "PID", "UPTIME", "RESTARTS", "LAST RUN", "NEXT", "TAGS", "WHY"]
READY = re.compile(r"aios: daemon pid (\d+) ready in [\d.]+ ms \(its own start-up: [\d.]+ ms\); home (.+)")
SLEEPER = 'command = ["sleep", "100000"]'


def aios(home: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """Run `python -m aios --home HOME ARGS...` from the repository root, as a user would."""
    return subprocess.run([sys.executable, "-m", "aios", "--home", str(home), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False,
                          env={**_ENV, **(env or {})}, **kw)


def popen_aios(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aios", "--home", str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=_ENV)


def ok(result: subprocess.CompletedProcess) -> str:
    """The stdout of a command that must succeed."""
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


class Daemons:
    """`aios up -d` for one home; remembers every daemon pid so teardown can stop them."""

    def __init__(self, home: Path):
        self.home, self.pids = home, []

    def up(self) -> int:
        out = ok(aios(self.home, "up", "-d"))
        match = READY.fullmatch(out.rstrip("\n"))
        assert match, f"unexpected ready line: {out!r}"
        assert match[2] == str(self.home)
        self.pids.append(int(match[1]))
        return int(match[1])

    def down(self) -> str:
        return ok(aios(self.home, "down"))

    def teardown(self) -> None:
        for pid in self.pids:
            if pid_alive(pid):
                aios(self.home, "down")
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def daemon(home):
    daemons = Daemons(home)
    yield daemons
    daemons.teardown()


def status(home: Path) -> dict[str, dict]:
    """Every job's status by name, over the control socket (for polling)."""
    return {j["name"]: j for j in control.call(home, "status")}


def running_pids(home: Path) -> dict[str, int]:
    return {name: j["pid"] for name, j in status(home).items() if j["status"] == "running"}


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """Parse the status table by the header's column positions (which proves alignment)."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0].split() == ["NAME", "TYPE", "STATUS", "PID", "UPTIME", "RESTARTS", "LAST", "RUN",
                                "NEXT", "TAGS", "WHY"]
    starts = [lines[0].index(h) for h in HEADERS]
    rows = {}
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        for start in starts[1:]:
            assert line[start - 2:start] == "  " or line[start - 2:].strip() == "", f"misaligned: {line!r}"
        rows[cells[0].removesuffix(" !")] = dict(zip(HEADERS, cells))   # " !": run as root only for want of a user
    return rows


def read_until(proc: subprocess.Popen, needle: str, seen: list[str], timeout: float = LIVENESS) -> str:
    """Read proc's stdout (without blocking past the deadline) until `needle` shows up."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    while needle not in "".join(seen):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"timed out waiting for {needle!r}; got {''.join(seen)!r}")
        chunk = os.read(fd, 65536)
        if not chunk:
            raise AssertionError(f"stdout closed before {needle!r}; got {''.join(seen)!r}")
        seen.append(chunk.decode())
    return "".join(seen)


def printed_soon(proc: subprocess.Popen, seen: list[str], needle: str) -> bool:
    """Read what proc printed within a short while; True once `needle` was seen."""
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + 0.5
    while needle not in "".join(seen) and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen.append(chunk.decode())
    return needle in "".join(seen)


def terminate(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(LIVENESS)
    proc.stdout.close()
    proc.stderr.close()


# ================================================================ lifecycle, status, why

LIFECYCLE = r"""
[jobs.svc]
type = "always"
command = ["sleep", "100000"]

[jobs.slowstop]
type = "always"
command = ["sh", "-c", "trap 'sleep 0.3; exit 0' TERM; while true; do sleep 0.05; done"]

[jobs.gpu]
type = "always"
tags = ["gpu"]
command = ["sleep", "100000"]

[jobs.off]
type = "always"
enabled = false
command = ["sleep", "100000"]

[jobs.crash]
type = "always"
command = ["sh", "-c", "exit 1"]
retries = 2
backoff = "10ms"

[jobs.ten]
type = "interval"
every = "1h"
command = ["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; done"]
"""


def test_up_status_logs_down_and_reading_with_the_daemon_down(home, daemon):
    write_home(home, LIFECYCLE)
    pid = daemon.up()
    again = aios(home, "up", "-d")
    assert again.returncode == 1
    assert again.stderr == f"aios: a daemon (pid {pid}) is already running for {home}\n"
    wait_until(lambda: {n: j["status"] for n, j in status(home).items()} == {
        "svc": "running", "slowstop": "running", "gpu": "ineligible", "off": "disabled",
        "crash": "failed", "ten": "waiting"} and status(home)["ten"]["last_run"]["outcome"] == "ok",
        what="every job in its settled state")
    wait_until(lambda: len(processes_with_home(home)) >= 2, what="the job processes")

    shown = aios(home, "status")
    assert shown.returncode == 4, "a failed job makes status exit 4"
    assert "\x1b" not in shown.stdout and shown.stderr == ""
    rows = table_rows(shown.stdout)
    assert list(rows) == ["svc", "slowstop", "gpu", "off", "crash", "ten"]
    assert rows["svc"]["STATUS"] == "running" and rows["svc"]["PID"] == str(status(home)["svc"]["pid"])
    assert rows["svc"]["RESTARTS"] == "0" and rows["svc"]["UPTIME"] != "-"
    assert (rows["gpu"]["STATUS"], rows["gpu"]["TAGS"]) == ("ineligible", "gpu")
    assert rows["gpu"]["WHY"] == "ineligible: tag missing on this device: gpu"
    assert (rows["off"]["STATUS"], rows["off"]["WHY"]) == ("disabled", "disabled")
    assert rows["crash"]["STATUS"] == "failed" and rows["crash"]["PID"] == "-"
    assert rows["crash"]["WHY"].startswith("failed: crash loop: 2 quick exits in a row")
    assert rows["crash"]["LAST RUN"].startswith("failed ")
    assert rows["ten"]["STATUS"] == "waiting" and rows["ten"]["LAST RUN"].startswith("ok ")
    assert rows["ten"]["NEXT"].startswith("in ")

    one = ok(aios(home, "status", "gpu"))
    assert list(table_rows(one)) == ["gpu"]
    assert list(table_rows(aios(home, "ls").stdout)) == list(rows)

    listed = json.loads(aios(home, "status", "--json").stdout)
    by_name = {j["name"]: j for j in listed}
    assert [j["name"] for j in listed] == list(rows)
    for job in listed:
        assert {"name", "type", "status", "pid", "why", "last_run"} <= set(job)
    assert (by_name["svc"]["type"], by_name["svc"]["status"]) == ("always", "running")
    assert by_name["gpu"]["why"] == "tag missing on this device: gpu"
    assert by_name["crash"]["why"].startswith("crash loop") and by_name["crash"]["pid"] is None
    assert by_name["ten"]["last_run"]["outcome"] == "ok"
    single = aios(home, "status", "crash", "--json")
    assert single.returncode == 4 and [j["name"] for j in json.loads(single.stdout)] == ["crash"]

    unknown = aios(home, "status", "x")
    assert unknown.returncode == 1
    assert unknown.stderr == "aios: no job named 'x' (known: crash, gpu, off, slowstop, svc, ten)\n"

    tail = aios(home, "logs", "ten", "-n", "3")
    assert ok(tail) == "line8\nline9\nline10\n"
    assert ok(aios(home, "logs", "ten")).splitlines() == [f"line{i}" for i in range(1, 11)]
    missing = aios(home, "logs", "off")
    assert missing.returncode == 1 and missing.stderr.startswith("aios: no log for job 'off' yet")

    stopped = aios(home, "down")
    assert processes_with_home(home) == [], "down returns only once every job process is gone"
    assert not pid_alive(pid)
    assert re.fullmatch(rf"aios: daemon pid {pid} and its jobs stopped in \d+ ms\n", ok(stopped))

    offline = aios(home, "status")
    assert offline.returncode == 3 and offline.stderr == "aios: daemon not running; last recorded state\n"
    rows = table_rows(offline.stdout)
    assert list(rows) == ["svc", "slowstop", "gpu", "off", "crash", "ten"]
    assert rows["svc"]["STATUS"] == "stopped" and rows["svc"]["PID"] == "-"
    assert rows["gpu"]["WHY"] == "ineligible: tag missing on this device: gpu"
    assert json.loads(aios(home, "status", "--json", "crash").stdout)[0]["status"] == "failed"
    assert ok(aios(home, "logs", "ten", "-n", "1")) == "line10\n"

    refused = aios(home, "start", "x")
    assert refused.returncode == 3
    assert refused.stderr == f"aios: no AIOS daemon is running for {home} (start one with: aios up -d)\n"
    for args in (["stop", "svc"], ["trigger", "ten"], ["apply"], ["reexec"], ["down"]):
        assert aios(home, *args).returncode == 3, args


def test_color_only_on_a_terminal_and_never_with_no_color(home, daemon):
    write_home(home, f"[jobs.svc]\ntype = \"always\"\n{SLEEPER}\n")
    daemon.up()
    wait_until(lambda: running_pids(home), what="svc running")

    def on_a_tty(env: dict) -> str:
        main, secondary = pty.openpty()
        try:
            done = subprocess.run([sys.executable, "-m", "aios", "--home", str(home), "status"], stdout=secondary,
                                  stderr=subprocess.PIPE, cwd=ROOT, env={**_ENV, **env}, timeout=60,
                                  check=False)
            assert done.returncode == 0, done.stderr
            os.close(secondary)
            secondary = None
            data = b""
            while select.select([main], [], [], 0.5)[0]:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the other side is closed and drained
                    break
                if not chunk:
                    break
                data += chunk
            return data.decode()
        finally:
            os.close(main)
            if secondary is not None:
                os.close(secondary)

    colored = on_a_tty({})
    assert "\x1b[" in colored and "svc" in colored
    plain = on_a_tty({"NO_COLOR": "1"})
    assert "\x1b" not in plain and "NAME" in plain and "running" in plain
    assert "\x1b" not in ok(aios(home, "status"))


def test_help_and_unknown_command(tmp_path):
    shown = aios(tmp_path, "--help")
    listed = re.findall(r"^    (\w+)(?: \((\w+)\))?", ok(shown), re.MULTILINE)
    names = [n for pair in listed for n in pair if n]
    assert names[:3] == ["up", "down", "reexec"], "the daemon's own commands come first"
    assert set(names) >= {"up", "down", "reexec", "status", "ls", "history", "events", "logs", "start", "stop",
                          "restart", "enable", "disable", "run", "trigger", "triggers", "apply", "add", "rm", "help",
                          "db", "dashboard"}
    assert len(names) == len(set(names))
    assert "Exit codes" in shown.stdout
    bad = aios(tmp_path, "frobnicate")
    assert bad.returncode == 2 and "frobnicate" in bad.stderr
    assert aios(tmp_path, "trigger", "--help").returncode == 0


# ================================================================ acting on jobs

ACTING = f"""
[jobs.a]
type = "always"
{SLEEPER}

[jobs.b]
type = "always"
{SLEEPER}

[jobs.t]
type = "trigger"
command = ["true"]
"""


def test_start_stop_restart_enable_disable(home, daemon):
    write_home(home, ACTING)
    daemon.up()
    first = wait_until(lambda: len(running_pids(home)) == 2 and running_pids(home), what="a and b running")

    for usage in (["restart"], ["restart", "a", "--all"], ["start"], ["stop", "--all", "b"]):
        wrong = aios(home, *usage)
        assert wrong.returncode == 2, usage
        assert "name one or more jobs, or give --all" in wrong.stderr

    assert ok(aios(home, "restart", "a")) == "a: restart ok\n"
    second = wait_until(lambda: running_pids(home).get("a") not in (None, first["a"]) and running_pids(home),
                        what="a with a new pid")
    assert second["b"] == first["b"]
    wait_until(lambda: not pid_alive(first["a"]), what="the old a to exit")
    assert status(home)["a"]["restarts"] == 0, "a restart on request is not an automatic restart"

    assert ok(aios(home, "stop", "a")) == "a: stop ok\n"
    wait_until(lambda: status(home)["a"]["status"] == "stopped" and not pid_alive(second["a"]), what="a stopped")
    assert ok(aios(home, "stop", "b", "t")) == "b: stop ok\nt: stop ok\n"
    wait_until(lambda: processes_with_home(home) == [], what="no job process")
    rows = table_rows(ok(aios(home, "status")))
    assert rows["a"]["STATUS"] == "stopped" and rows["a"]["WHY"] == "stopped: stopped on request"
    assert ok(aios(home, "stop", "--all")) == "", "--all skips stopped jobs"

    assert ok(aios(home, "start", "a", "b")) == "a: start ok\nb: start ok\n"
    third = wait_until(lambda: len(running_pids(home)) == 2 and running_pids(home), what="a and b again")
    assert ok(aios(home, "start", "--all")) == "a: start ok\nb: start ok\nt: start ok\n"
    assert status(home)["t"]["status"] == "waiting"
    assert ok(aios(home, "restart", "--all")) == "a: restart ok\nb: restart ok\n"
    fourth = wait_until(lambda: len(running_pids(home)) == 2 and all(
        running_pids(home)[n] != third[n] for n in "ab") and running_pids(home), what="new pids for a and b")
    wait_until(lambda: not pid_alive(third["a"]) and not pid_alive(third["b"]), what="the old copies gone")

    mixed = aios(home, "stop", "a", "nope")
    assert mixed.returncode == 1 and mixed.stdout == "a: stop ok\n"
    assert mixed.stderr == "aios: nope: no job named 'nope' (known: a, b, t)\n"
    wait_until(lambda: status(home)["a"]["status"] == "stopped", what="a stopped")

    assert ok(aios(home, "disable", "b")) == "b: disable ok\n"
    wait_until(lambda: status(home)["b"]["status"] == "disabled" and not pid_alive(fourth["b"]), what="b disabled")
    assert table_rows(ok(aios(home, "status", "b")))["b"]["WHY"] == "disabled"
    refused = aios(home, "start", "b")
    assert refused.returncode == 1 and "disabled; enable it first" in refused.stderr
    assert status(home)["a"]["status"] == "stopped", "stop leaves the job stopped"

    daemon.down()
    daemon.up()
    wait_until(lambda: status(home)["a"]["status"] == "running", what="a running in the new daemon")
    assert status(home)["b"]["status"] == "disabled", "disable persists across down + up"
    assert table_rows(ok(aios(home, "status")))["b"]["STATUS"] == "disabled"
    assert ok(aios(home, "enable", "b")) == "b: enable ok\n"
    wait_until(lambda: status(home)["b"]["status"] == "running", what="b running once enabled")
    unknown = aios(home, "enable", "zzz")
    assert unknown.returncode == 1 and "no job named 'zzz'" in unknown.stderr


TRIGGERS = r"""
[jobs.echo]
type = "trigger"
command = ["sh", "-c", "printf '%s\\n' \"$@\" > out.txt", "x"]

[jobs.seven]
type = "trigger"
command = ["sh", "-c", "exit 7"]

[jobs.killed]
type = "trigger"
command = ["sh", "-c", "kill -TERM $$"]

[jobs.prog]
type = "trigger"
program = "dump.py:main"

[jobs.hourly]
type = "interval"
every = "1h"
command = ["sh", "-c", "echo hourly run >> hourly.txt"]

[jobs.daily]
type = "daily"
time = "03:00"
catch_up = "skip"
command = ["sh", "-c", "echo daily run >> daily.txt"]

[jobs.svc]
type = "always"
command = ["sleep", "100000"]
"""

DUMP = """
import json

def main(*args, **kwargs):
    with open("prog.json", "w") as f:
        json.dump({"args": list(args), "kwargs": kwargs}, f)
"""

NASTY = ["$(touch pwned1)", "`touch pwned2`", "; touch pwned3", "a|b", "&&", "*", "it's", 'say "hi"',
         "$HOME", "back\\slash", "  two  spaces  ", "<in", ">out"]


def test_trigger_and_run(home, daemon):
    write_home(home, TRIGGERS, {"dump.py": DUMP})
    daemon.up()
    wait_until(lambda: status(home)["svc"]["status"] == "running" and runs(home, "hourly")
               and runs(home, "hourly")[-1]["outcome"] == "ok", what="svc running and hourly's first run")

    refused = aios(home, "trigger", "echo", "a", "--kw", "k=v")
    assert refused.returncode == 1 and refused.stderr == (
        "aios: job 'echo' runs a command, which takes positional arguments only; "
        "keyword arguments are for program jobs\n")
    queued = aios(home, "trigger", "echo", "a", "b c")
    assert re.fullmatch(r"\d+\n", ok(queued)), queued.stdout
    trigger_id = int(queued.stdout)
    wait_until(lambda: (home / "out.txt").exists() and (home / "out.txt").read_text() == "a\nb c\n",
               what="out.txt with the two arguments")
    assert [r["trigger_id"] for r in runs(home, "echo")] == [trigger_id]
    as_options = aios(home, "trigger", "echo", "first", "--arg", "x y", "--arg", "z", "--wait")
    assert as_options.returncode == 0, as_options.stderr
    assert (home / "out.txt").read_text() == "first\nx y\nz\n", "--arg values follow the positional ones"

    nasty = aios(home, "trigger", "echo", *NASTY, "--wait")
    assert nasty.returncode == 0, nasty.stderr
    assert (home / "out.txt").read_text() == "".join(a + "\n" for a in NASTY)
    assert not list(home.glob("pwned*")) and not (home / "out").exists()
    assert re.fullmatch(rf"aios: trigger {int(nasty.stdout)} ok \(run \d+\)\n", nasty.stderr)

    seven = aios(home, "trigger", "seven", "--wait")
    assert seven.returncode == 7
    assert re.fullmatch(r"\d+\n", seven.stdout)
    assert re.fullmatch(rf"aios: trigger {int(seven.stdout)} failed \(run \d+\)\n", seven.stderr)
    killed = aios(home, "trigger", "killed", "--wait")
    assert killed.returncode == 128 + signal.SIGTERM, killed.stderr
    assert "killed" in killed.stderr

    program = aios(home, "trigger", "prog", "1", "two words", "--kw", "k=v", "--kw", "eq=a=b", "--wait")
    assert program.returncode == 0, program.stderr
    assert json.loads((home / "prog.json").read_text()) == {"args": ["1", "two words"],
                                                            "kwargs": {"k": "v", "eq": "a=b"}}
    bad_kw = aios(home, "trigger", "prog", "--kw", "novalue")
    assert bad_kw.returncode == 2 and "use KEY=VALUE" in bad_kw.stderr   # a usage error
    always = aios(home, "trigger", "svc")
    assert always.returncode == 1 and "cannot be triggered" in always.stderr

    hourly_runs = len(runs(home, "hourly"))
    assert ok(aios(home, "run", "hourly")) == "hourly: run ok\n"
    wait_until(lambda: len(runs(home, "hourly")) == hourly_runs + 1 and runs(home, "hourly")[-1]["outcome"] == "ok",
               what="a second run of hourly")
    assert (home / "hourly.txt").read_text().count("hourly run") == hourly_runs + 1
    assert not (home / "daily.txt").exists()
    assert ok(aios(home, "run", "daily")) == "daily: run ok\n"
    wait_until(lambda: (home / "daily.txt").exists() and runs(home, "daily")
               and runs(home, "daily")[-1]["outcome"] == "ok", what="a run of daily")
    assert status(home)["daily"]["status"] == "waiting"
    refused = aios(home, "run", "svc")
    assert refused.returncode == 1
    assert refused.stderr == "aios: svc: job 'svc' is an always job; use start or restart\n"
    assert status(home)["svc"]["status"] == "running"


def test_trigger_args_may_follow_wait(home, daemon):
    write_home(home, TRIGGERS, {"dump.py": DUMP})
    daemon.up()
    done = aios(home, "trigger", "echo", "--wait", "a", "b")
    assert done.returncode == 0, done.stderr
    assert (home / "out.txt").read_text() == "a\nb\n"


# ================================================================ logs, history, events

READING = r"""
[jobs.say]
type = "trigger"
command = ["sh", "-c", "echo \"said $1\"", "say"]

[jobs.seven]
type = "trigger"
command = ["sh", "-c", "echo before exit; exit 7"]

[jobs.later]
type = "trigger"
command = ["sh", "-c", "echo \"later $1\"", "later"]
"""


def test_logs_follow_history_and_events(home, daemon):
    write_home(home, READING)
    daemon.up()
    assert aios(home, "trigger", "say", "first", "--wait").returncode == 0
    assert aios(home, "trigger", "seven", "--wait").returncode == 7

    follow = popen_aios(home, "logs", "say", "-f", "-n", "1")
    try:
        seen: list[str] = []
        assert read_until(follow, "said first\n", seen) == "said first\n"
        assert aios(home, "trigger", "say", "second", "--wait").returncode == 0
        assert read_until(follow, "said second\n", seen) == "said first\nsaid second\n"
    finally:
        terminate(follow)
    fresh = popen_aios(home, "logs", "later", "-f")  # no log yet: followed once it appears
    try:
        seen, sent = [], iter(range(1000))
        wait_until(lambda: aios(home, "trigger", "later", f"n{next(sent)}", "--wait").returncode == 0
                   and printed_soon(fresh, seen, "\n"), what="logs -f to print a line of a new log")
        assert re.fullmatch(r"(later n\d+\n)+", "".join(seen)), seen
    finally:
        terminate(fresh)

    watch = popen_aios(home, "events", "-f")
    try:
        seen = []
        wait_until(lambda: ok(aios(home, "trigger", "later", "again")) and printed_soon(watch, seen, "trigger_added"),
                   what="events -f to print a trigger_added line")
    finally:
        terminate(watch)
    line = next(li for li in "".join(seen).splitlines() if "trigger_added" in li)
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  trigger_added +later +trigger \d+ of 'later' queued$", line)
    wait_until(lambda: all(r["outcome"] for r in runs(home)), what="every run to end")

    for when in ("up", "down"):
        stored_runs = list(reversed(runs(home)))  # newest first, as history shows them
        table = ok(aios(home, "history", "-n", "100")).splitlines()
        assert table[0].split() == ["STARTED", "JOB", "RUN", "DURATION", "OUTCOME", "EXIT", "ATTEMPT", "TRIGGER"]
        shown = [li.split() for li in table[1:]]
        assert [(r[2], r[3], r[5], r[6]) for r in shown] == [
            (r["job"], str(r["id"]), r["outcome"], str(r["exit_code"])) for r in stored_runs], when
        sevens = ok(aios(home, "history", "seven")).splitlines()
        assert len(sevens) == 2 and sevens[1].split()[2:] == [
            "seven", str(runs(home, "seven")[0]["id"]), sevens[1].split()[4], "failed", "7", "1",
            str(runs(home, "seven")[0]["trigger_id"])], sevens
        newest = json.loads(ok(aios(home, "history", "-n", "2", "--json")))
        assert [r["id"] for r in newest] == [r["id"] for r in stored_runs[:2]], when
        say = json.loads(ok(aios(home, "history", "say", "--json")))
        assert [(r["job"], r["outcome"], r["exit_code"]) for r in say] == [("say", "ok", 0)] * 2
        assert {"id", "job", "attempt", "trigger_id", "started", "ended", "exit_code", "signal",
                "outcome"} <= set(say[0])

        stored = events(home)
        last = json.loads(ok(aios(home, "events", "-n", "4", "--json")))
        assert [e["id"] for e in last] == [e["id"] for e in stored[-4:]], when  # oldest first
        assert {"id", "ts", "name", "job", "message"} <= set(last[0])
        lines = ok(aios(home, "events", "-n", "3")).splitlines()
        assert [li.split()[2] for li in lines] == [e["name"] for e in stored[-3:]], when
        only_seven = json.loads(ok(aios(home, "events", "seven", "--json")))
        assert only_seven and {e["job"] for e in only_seven} == {"seven"}
        assert "trigger_added" in {e["name"] for e in only_seven}
        if when == "up":
            daemon.down()


# ================================================================ apply, add, rm

def always(name: str, *argv: str) -> str:
    return f'\n[jobs.{name}]\ntype = "always"\ncommand = {json.dumps(list(argv))}\n'


def test_apply_prints_the_diff_and_brings_jobs_in_line(home, daemon):
    write_home(home, always("keep", "sleep", "100000") + always("change", "sleep", "100000")
               + always("gone", "sleep", "100000"))
    daemon.up()
    before = wait_until(lambda: len(running_pids(home)) == 3 and running_pids(home), what="three jobs running")

    (home / "aios.toml").write_text(always("keep", "sleep", "100000") + always("change", "sleep", "100001")
                                    + always("new", "sleep", "100000"))
    diff = aios(home, "apply")
    assert ok(diff) == "+ new (added)\n- gone (removed)\n~ change (changed: command)\n  1 unchanged\n"
    assert diff.stderr == ""
    after = wait_until(lambda: set(running_pids(home)) == {"keep", "change", "new"}
                       and running_pids(home)["change"] != before["change"] and running_pids(home),
                       what="the new set of jobs")
    wait_until(lambda: not pid_alive(before["gone"]) and not pid_alive(before["change"]),
               what="the removed job and the old copy of the changed one to exit")
    assert after["keep"] == before["keep"], "an unchanged job keeps its process"
    wait_until(lambda: set(status(home)) == {"keep", "change", "new"}, what="gone dropped by the daemon")
    with open(f"/proc/{after['change']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"100001"]

    same = aios(home, "apply")
    assert ok(same) == "  3 unchanged\n"

    other = home.parent / "other.toml"
    other.write_text(always("keep", "sleep", "100000") + always("extra", "sleep", "100000"))
    diff = ok(aios(home, "apply", str(other)))
    assert sorted(diff.splitlines()) == sorted(["+ extra (added)", "- change (removed)", "- new (removed)",
                                                "  1 unchanged"])
    assert diff.splitlines()[0] == "+ extra (added)" and diff.splitlines()[-1] == "  1 unchanged"
    now = wait_until(lambda: set(running_pids(home)) == {"keep", "extra"} and running_pids(home),
                     what="keep and extra running")
    assert now["keep"] == before["keep"]
    assert "[jobs.extra]" in (home / "aios.toml").read_text(), "apply FILE replaces aios.toml"
    wait_until(lambda: not pid_alive(after["change"]) and not pid_alive(after["new"])
               and set(status(home)) == {"keep", "extra"}, what="removed jobs gone")

    good = (home / "aios.toml").read_text()
    broken = good + '\n[jobs.broken]\ntype = "always"\ncommand = ["sleep", "1"\n'
    line = broken.count("\n", 0, broken.index('command = ["sleep", "1"')) + 1
    (home / "aios.toml").write_text(broken)
    refused = aios(home, "apply")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == f"aios: aios.toml line {line}: unclosed array\n"
    bad_file = home.parent / "bad.toml"
    bad_file.write_text("[jobs.x]\ntype = \n")
    refused = aios(home, "apply", str(bad_file))
    assert refused.returncode == 1
    assert refused.stderr == f"aios: {bad_file} (applied as aios.toml): aios.toml line 2: invalid value\n"
    assert (home / "aios.toml").read_text() == broken, "a refused file replaces nothing"
    assert running_pids(home) == now, "a refused file changes nothing"

    (home / "aios.toml").write_text(good + '\n[jobs.bad]\ntype = "daily"\ntime = "25:00"\ncommand = ["true"]\n')
    partial = aios(home, "apply")
    assert partial.returncode == 1 and partial.stdout == "  2 unchanged\n"
    assert "job 'bad'" in partial.stderr and "25:00" in partial.stderr
    assert running_pids(home) == now


UPDATED = "aios.toml updated (no daemon running; it takes effect at the next start)\n"


def test_rm_with_the_daemon_up_and_down(home, daemon):
    write_home(home, always("svc", "sleep", "100000") + always("svc2", "sleep", "100000")
               + '\n[jobs.tick]\ntype = "interval"\nevery = "1h"\ncommand = ["true"]\n')
    daemon.up()
    pid = wait_until(lambda: running_pids(home).get("svc2"), what="svc2 running")

    assert ok(aios(home, "rm", "svc2")) == "- svc2 (removed)\n  2 unchanged\n"
    wait_until(lambda: not pid_alive(pid) and "svc2" not in status(home), what="svc2 stopped and dropped")
    assert "[jobs.svc2]" not in (home / "aios.toml").read_text()
    assert list(table_rows(ok(aios(home, "status")))) == ["svc", "tick"]
    nope = aios(home, "rm", "svc2")
    assert nope.returncode == 1 and nope.stderr == "aios: no job named 'svc2' in aios.toml\n"

    daemon.down()
    assert ok(aios(home, "rm", "tick")) == UPDATED
    assert "[jobs.tick]" not in (home / "aios.toml").read_text()
    assert processes_with_home(home) == []
    daemon.up()
    wait_until(lambda: set(status(home)) == {"svc"} and "svc" in running_pids(home), what="the offline rm in effect")


def test_add_with_the_daemon_up_and_down(home, daemon):
    write_home(home, always("svc", "sleep", "100000"))
    daemon.up()
    wait_until(lambda: "svc" in running_pids(home), what="svc running")

    added = aios(home, "add", "--type", "interval", "--every", "30s", "tick", "--", "echo", "hi")
    assert ok(added) == "+ tick (added)\n  1 unchanged\n"
    rows = table_rows(ok(aios(home, "status")))
    assert rows["tick"]["TYPE"] == "interval"
    wait_until(lambda: runs(home, "tick") and runs(home, "tick")[-1]["outcome"] == "ok", what="tick's first run")
    assert ok(aios(home, "logs", "tick")) == "hi\n"

    text = (home / "aios.toml").read_text()
    twice = aios(home, "add", "--type", "interval", "--every", "1m", "tick", "--", "echo", "again")
    assert twice.returncode == 1 and "job 'tick' already exists" in twice.stderr
    bad = aios(home, "add", "--type", "daily", "--time", "25:00", "late", "--", "echo", "hi")
    assert bad.returncode == 2, "options a job cannot have are a usage error"
    assert bad.stderr == "aios: job 'late': time: '25:00' is not a time of day; use \"HH:MM\" from 00:00 to 23:59\n"
    missing = aios(home, "add", "--type", "always", "nocmd")
    assert missing.returncode == 2 and "exactly one of 'program'" in missing.stderr
    assert (home / "aios.toml").read_text() == text, "a refused add leaves aios.toml alone"

    assert ok(aios(home, "add", "--type", "always", "svc2", "--", "sleep", "100000")) == \
        "+ svc2 (added)\n  2 unchanged\n"
    pid = wait_until(lambda: running_pids(home).get("svc2"), what="svc2 running")
    shell = aios(home, "add", "--type", "trigger", "--shell", "sh1", "--", "echo", "$1", ">", "sh.txt")
    assert ok(shell) == "+ sh1 (added)\n  3 unchanged\n"
    assert aios(home, "trigger", "sh1", "from-shell", "--wait").returncode == 0
    assert (home / "sh.txt").read_text() == "from-shell\n"
    assert ok(aios(home, "rm", "svc2")) == "- svc2 (removed)\n  3 unchanged\n"
    wait_until(lambda: not pid_alive(pid), what="svc2's process to stop")

    daemon.down()
    offline = aios(home, "add", "--type", "interval", "--every", "1h", "later", "--", "echo", "later")
    assert ok(offline) == UPDATED
    assert "[jobs.later]" in (home / "aios.toml").read_text()
    daemon.up()
    wait_until(lambda: runs(home, "later") and set(status(home)) == {"svc", "tick", "sh1", "later"},
               what="the offline add in effect")


def test_add_name_first_as_documented(home):
    write_home(home, always("svc", "sleep", "100000"))
    added = aios(home, "add", "tick", "--type", "interval", "--every", "30s", "--", "echo", "hi")
    assert ok(added) == UPDATED
    assert "[jobs.tick]" in (home / "aios.toml").read_text()


def test_reexec_keeps_every_job(home, daemon):
    write_home(home, always("a", "sleep", "100000") + always("b", "sleep", "100000")
               + always("c", "sh", "-c", "sleep 100000"))
    pid = daemon.up()
    before = wait_until(lambda: len(running_pids(home)) == 3 and running_pids(home), what="three jobs running")
    processes = wait_until(lambda: len(processes_with_home(home)) == 4 and sorted(processes_with_home(home)),
                           what="four job processes (c is sh and its sleep)")
    started = control.call(home, "ping")["started"]

    done = aios(home, "reexec")
    assert re.fullmatch(rf"aios: daemon pid {pid} re-executed in [\d.]+ ms; 3 jobs kept running\n", ok(done))
    about = control.call(home, "ping")
    assert about["pid"] == pid and about["started"] != started
    assert running_pids(home) == before
    rows = table_rows(ok(aios(home, "status")))
    assert {n: (r["PID"], r["RESTARTS"]) for n, r in rows.items()} == {n: (str(p), "0") for n, p in before.items()}
    assert all(j["restarts"] == 0 for j in status(home).values())
    assert sorted(processes_with_home(home)) == processes
