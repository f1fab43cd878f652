"""A daemon killed between spawning a job and recording it: the next daemon finds the
process by the AIOS_RUN_ID and AIOS_HOME in its environment and adopts it, instead of
starting a second copy. The windows are reproduced exactly by killing the daemon and
removing from the store what it had not written yet (tests/chaos/test_kill_loop.py hits
them by chance)."""
from __future__ import annotations

import sqlite3

from aios import control

from .conftest import DaemonProcess, events, processes_with_home, runs, wait_until, write_home

ALWAYS = """
[jobs.svc]
type = "always"
command = ["sleep", "100000"]
"""


def running_pid(home) -> int | None:
    job = control.call(home, "status", job="svc")[0]
    return job["pid"] if job["status"] == "running" else None


def crash_and_forget(home, sql: str) -> int:
    """Start a daemon, let svc run, kill -9 the daemon, then undo in the store what a
    daemon killed a moment earlier would not have written; returns svc's pid."""
    write_home(home, ALWAYS)
    first = DaemonProcess(home)
    first.wait_ready()
    pid = wait_until(lambda: running_pid(home), what="svc running")
    first.kill()
    with sqlite3.connect(home / "orchestrator.db") as db:
        db.execute(sql)
    return pid


def test_a_run_whose_pid_was_never_written_is_adopted_by_its_run_id(home):
    pid = crash_and_forget(home, "UPDATE runs SET pid = NULL, pid_start = NULL WHERE ended IS NULL")
    second = DaemonProcess(home)
    second.wait_ready()
    assert wait_until(lambda: running_pid(home), what="svc adopted") == pid
    assert processes_with_home(home) == [pid], "one copy: the leftover, adopted"
    assert [(r["pid"], r["ended"]) for r in runs(home, "svc")] == [(pid, None)]
    assert second.terminate() == 0
    assert processes_with_home(home) == []


def test_a_job_process_no_run_records_is_adopted_as_a_new_run(home):
    pid = crash_and_forget(home, "DELETE FROM runs WHERE ended IS NULL")
    second = DaemonProcess(home)
    second.wait_ready()
    assert wait_until(lambda: running_pid(home), what="svc adopted") == pid
    assert processes_with_home(home) == [pid]
    assert [e["message"] for e in events(home, "run_unrecorded")] == [
        f"pid {pid} was running with no record of its run; adopting it"]
    assert second.terminate() == 0
    assert [r["outcome"] for r in runs(home, "svc")] == ["stopped"]


def test_a_trigger_whose_run_pid_was_never_written_runs_once(home):
    write_home(home, """
[jobs.slow]
type = "trigger"
command = ["sh", "-c", "echo start >> marks.txt; sleep 1"]
""")
    first = DaemonProcess(home)
    first.wait_ready()
    trigger_id = control.call(home, "trigger", job="slow")
    wait_until(lambda: (home / "marks.txt").exists())
    first.kill()
    with sqlite3.connect(home / "orchestrator.db") as db:
        db.execute("UPDATE runs SET pid = NULL, pid_start = NULL WHERE ended IS NULL")
    second = DaemonProcess(home)
    second.wait_ready()
    result = control.call(home, "wait", trigger=trigger_id)
    assert (home / "marks.txt").read_text() == "start\n", "the adopted run completed the trigger; no second run"
    assert result["run_id"] == runs(home, "slow")[0]["id"] and len(runs(home, "slow")) == 1
    assert second.terminate() == 0


def test_a_clean_exit_leaves_an_empty_pid_file(home):
    """So that the next start knows it need not search /proc for leftovers."""
    write_home(home, ALWAYS)
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    assert (home / "aios.pid").read_text() == f"{daemon.pid}\n"
    assert daemon.terminate() == 0
    assert (home / "aios.pid").read_text() == ""
