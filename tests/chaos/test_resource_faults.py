"""The state database fails under a running daemon: its file system is full (a 2 MiB
tmpfs, filled), or another process holds it locked (BEGIN EXCLUSIVE). Throughout, the
daemon keeps supervising (a killed always job comes back), reports the error once (not
a line per failed write), refuses new triggers with a clear error rather than accepting
what it cannot store, and when the fault ends it writes what waited, runs the trigger
that was acknowledged before the fault, and records everything exactly once.
"""
from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from aios import control
from aios.errors import AiosError
from tests.integration.conftest import DaemonProcess, pid_alive, processes_with_home, wait_until, write_home

from .conftest import figures

pytestmark = pytest.mark.chaos

JOBS = """
[jobs.svc]
type = "always"
command = ["sleep", "100000"]
min_uptime = "0s"

[jobs.work]
type = "trigger"
command = ["sh", "-c", 'sleep "$1"; echo "$2" >> "$RAN"', "work"]
env = { RAN = "%s" }
"""
FAULT_SECONDS = 4.0      # how long the fault lasts once the daemon has met it


def svc_pid(home: Path) -> int | None:
    job = control.call(home, "status", job="svc")[0]
    return job["pid"] if job["status"] == "running" else None


@contextmanager
def database_locked(home: Path):
    """Another process holds the write lock (BEGIN EXCLUSIVE) until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys\n"
         "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "db.execute('BEGIN EXCLUSIVE'); db.execute('INSERT INTO events (name) VALUES (\\'locker\\')')\n"
         "print('locked', flush=True); sys.stdin.read(); db.execute('ROLLBACK')\n",
         str(home / "orchestrator.db")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield "database is locked"
    finally:
        holder.stdin.close()
        holder.wait(30)


@contextmanager
def disk_full(home: Path):
    """The file system of the home has no byte left until the block ends. The WAL is
    checkpointed and truncated first, so that the daemon's next write needs new space."""
    with sqlite3.connect(home / "orchestrator.db", timeout=10) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = home / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    try:
        yield "database or disk is full"
    finally:
        filler.unlink()


def _count(text: str, word: str) -> int:
    return sum(1 for line in text.splitlines() if word in line)


def _trigger_rows(home: Path, ids: list[int]) -> dict[int, tuple]:
    with sqlite3.connect(home / "orchestrator.db", timeout=10) as db:
        rows = {tid: (done, run_id) for tid, done, run_id in db.execute("SELECT id, done, run_id FROM triggers")}
        completions = {tid: n for tid, n in db.execute(
            "SELECT trigger_id, count(*) FROM runs WHERE trigger_id IS NOT NULL AND ended IS NOT NULL "
            "AND outcome NOT IN ('lost', 'stopped') GROUP BY trigger_id")}
    return {tid: rows.get(tid, (None, None)) + (completions.get(tid, 0),) for tid in ids}


def _events(home: Path, name: str) -> int:
    with sqlite3.connect(home / "orchestrator.db", timeout=10) as db:
        return db.execute("SELECT count(*) FROM events WHERE name = ?", (name,)).fetchone()[0]


def run_through_fault(home: Path, outside: Path, fault) -> dict:
    ran = outside / "ran.txt"
    write_home(home, JOBS % ran)
    daemon = DaemonProcess(home, stderr_path=outside / "daemon.stderr")
    daemon.wait_ready()
    first = wait_until(lambda: svc_pid(home), what="svc running")
    with control.Client(home) as client:
        block = client.call("trigger", job="work", args=["2", "block"])   # runs into the fault
        before = client.call("trigger", job="work", args=["0", "before"])  # acknowledged, queued behind it
    wait_until(lambda: ran.exists() or control.call(home, "status", job="work")[0]["pids"], what="block to start")
    during, refused = [], []
    with fault(home) as error_text:
        os.kill(first, signal.SIGKILL)
        second = wait_until(lambda: svc_pid(home) not in (None, first) and svc_pid(home),
                            what="the killed always job to come back during the fault")
        try:
            during.append(control.call(home, "trigger", job="work", args=["0", "during"]))
        except AiosError as exc:
            refused.append(str(exc))
        wait_until(lambda: ran.exists() and "block" in ran.read_text(), what="the blocking run to end")
        os.kill(second, signal.SIGKILL)   # and once more, with runs already waiting to be written
        third = wait_until(lambda: svc_pid(home) not in (None, second) and svc_pid(home),
                           what="the always job to come back again")
        time.sleep(FAULT_SECONDS)         # retries happen meanwhile; none may be reported again
        assert "before" not in ran.read_text(), "a trigger was claimed while the store failed"
        assert daemon.proc.poll() is None
        during_fault = daemon.output()
    wait_until(lambda: "store_recovered" in daemon.output(), what="the daemon to catch up")
    ids = [block, before] + during
    wait_until(lambda: all(done == 1 for done, _, _ in _trigger_rows(home, ids).values()),
               what="every acknowledged trigger to be done")
    rows = _trigger_rows(home, ids)
    text = ran.read_text().split()
    assert daemon.proc.poll() is None and svc_pid(home) == third
    result = {
        "error_text": error_text, "refused": refused, "acknowledged_during": len(during),
        "store_error_lines": _count(during_fault, "store_error"),
        "internal_errors": _count(daemon.output(), "internal error"),
        "store_error_events": _events(home, "store_error"), "store_recovered_events": _events(home, "store_recovered"),
        "rows": rows, "ran": text, "svc_pids": (first, second, third),
    }
    assert daemon.terminate() == 0
    assert processes_with_home(home) == []
    assert not pid_alive(third)
    return result


def check(result: dict, title: str) -> None:
    figures(title, **{k: v for k, v in result.items() if k != "svc_pids"})
    assert result["store_error_lines"] == 1, "the error is reported once, not once per failed write"
    assert result["internal_errors"] == 0
    assert (result["store_error_events"], result["store_recovered_events"]) == (1, 1)
    for refusal in result["refused"]:   # the insert itself failed, or the store already failed: never acknowledged
        assert refusal.startswith(("adding a trigger of 'work' failed: ", "trigger of 'work' refused: the state "
                                   "database is failing (")) and result["error_text"] in refusal
    assert len(result["refused"]) + result["acknowledged_during"] == 1
    for tid, (done, run_id, completions) in result["rows"].items():
        assert (done, completions) == (1, 1) and run_id is not None, f"trigger {tid}: {result['rows'][tid]}"
    assert result["ran"].count("block") == result["ran"].count("before") == 1
    assert result["ran"].count("during") == result["acknowledged_during"]


def test_database_locked_by_another_process(home, tmp_path):
    check(run_through_fault(home, tmp_path, database_locked), "database locked by another process")


def test_state_database_on_a_full_file_system(tiny_fs, tmp_path):
    check(run_through_fault(tiny_fs / "home", tmp_path, disk_full), "state database on a full 2 MiB tmpfs")


def test_the_daemons_own_log_on_the_full_file_system(tiny_fs, tmp_path):
    """As with `aios up -d`, whose orchestrator.log lives in the home: the daemon cannot
    write its own log while the disk is full, and must keep supervising all the same."""
    home = tiny_fs / "home"
    write_home(home, JOBS % (tmp_path / "ran.txt"))
    daemon = DaemonProcess(home)          # its stderr is home/daemon.stderr, on the tmpfs
    daemon.wait_ready()
    first = wait_until(lambda: svc_pid(home), what="svc running")
    log = home / "daemon.stderr"
    with open(log, "ab") as f:   # end the log at a page boundary, so its next line needs a new page
        f.write(b"-" * ((-log.stat().st_size - 1) % 4096) + b"\n")
    with disk_full(home):
        second = first
        for _ in range(3):
            os.kill(second, signal.SIGKILL)
            second = wait_until(lambda: svc_pid(home) not in (None, second) and svc_pid(home),
                                what="the killed always job to come back while nothing can be written")
        with pytest.raises(AiosError):
            control.call(home, "trigger", job="work", args=["0", "during"])
        assert daemon.proc.poll() is None
    wait_until(lambda: _events(home, "store_recovered") == 1, what="the daemon to catch up")
    assert daemon.proc.poll() is None and svc_pid(home) == second
    assert "internal error" not in daemon.output()
    assert daemon.terminate() == 0
