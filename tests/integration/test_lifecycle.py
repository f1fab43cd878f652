"""Daemon lifecycle: re-exec keeps every job; a crashed daemon's jobs are adopted or
stopped, never doubled; an acknowledged trigger survives a kill -9 of the daemon."""
from __future__ import annotations

import os
import signal
import sqlite3

from aios import control

from .conftest import DaemonProcess, pid_alive, processes_with_home, runs, wait_until, write_home

ALWAYS = "".join(f"""
[jobs.svc{i}]
type = "always"
command = ["sleep", "100000"]
""" for i in range(5))


def running(home) -> dict[str, int]:
    return {j["name"]: j["pid"] for j in control.call(home, "status")
            if j["status"] == "running" and j["type"] == "always"}


def started_since(home, started: float) -> bool:
    """True once the daemon answering is a new image (started later than `started`)."""
    try:
        return control.call(home, "ping")["started"] != started
    except control.DaemonNotRunning:  # a connection caught in the exec itself
        return False


def test_reexec_keeps_every_job_and_counts_no_restart(home):
    write_home(home, ALWAYS + """
[jobs.quick]
type = "trigger"
command = ["sleep", "0.3"]
""")
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    before = wait_until(lambda: len(running(home)) == 5 and running(home))
    started = control.call(home, "ping")["started"]
    trigger_id = control.call(home, "trigger", job="quick")
    assert control.call(home, "reexec") == {"pid": daemon.pid}
    wait_until(lambda: started_since(home, started), what="the new image to answer")
    assert running(home) == before
    assert all(j["restarts"] == 0 for j in control.call(home, "status"))
    assert [r for r in runs(home) if r["ended"] is not None and r["job"] != "quick"] == []
    result = control.call(home, "wait", trigger=trigger_id)
    assert (result["outcome"], result["exit_code"]) == ("ok", 0), "a run that ended across the exec is reaped"
    assert daemon.proc.poll() is None and "daemon_reexecuted" in daemon.output()
    assert daemon.terminate() == 0
    assert processes_with_home(home) == []


def test_sighup_reexecutes_too(home):
    write_home(home, ALWAYS)
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    before = wait_until(lambda: len(running(home)) == 5 and running(home))
    started = control.call(home, "ping")["started"]
    os.kill(daemon.pid, signal.SIGHUP)
    wait_until(lambda: started_since(home, started), what="the re-executed daemon")
    assert running(home) == before
    assert daemon.terminate() == 0


def test_a_stopped_job_stays_stopped_across_reexec(home):
    write_home(home, ALWAYS)
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    wait_until(lambda: len(running(home)) == 5)
    control.call(home, "stop", job="svc0")
    wait_until(lambda: "svc0" not in running(home))
    started = control.call(home, "ping")["started"]
    control.call(home, "reexec")
    wait_until(lambda: started_since(home, started))
    assert set(running(home)) == {"svc1", "svc2", "svc3", "svc4"}
    assert daemon.terminate() == 0


def test_adopt_false_job_is_stopped_and_replaced_after_a_crash(home):
    write_home(home, """
[jobs.keep]
type = "always"
command = ["sleep", "100000"]

[jobs.fresh]
type = "always"
adopt = false
command = ["sleep", "100000"]
""")
    first = DaemonProcess(home)
    first.wait_ready()
    before = wait_until(lambda: len(running(home)) == 2 and running(home))
    first.kill()
    second = DaemonProcess(home)
    second.wait_ready()
    after = wait_until(lambda: len(running(home)) == 2 and running(home).get("fresh") != before["fresh"]
                       and running(home))
    assert after["keep"] == before["keep"]
    wait_until(lambda: not pid_alive(before["fresh"]), what="the old copy to be stopped")
    assert "adopt_refused" in second.output()
    wait_until(lambda: len(processes_with_home(home)) == 2, what="exactly one copy of each job")
    assert second.terminate() == 0


def test_a_trigger_cut_short_by_a_daemon_crash_runs_again_and_completes_once(home):
    write_home(home, """
[jobs.slow]
type = "trigger"
command = ["sh", "-c", "echo start >> marks.txt; sleep 0.5; echo end >> marks.txt"]
adopt = false
""")
    first = DaemonProcess(home)
    first.wait_ready()
    trigger_id = control.call(home, "trigger", job="slow")
    wait_until(lambda: (home / "marks.txt").exists())
    first.kill()  # the run goes on alone, then ends while no daemon watches
    wait_until(lambda: "end" in (home / "marks.txt").read_text(), what="the orphaned run to finish")
    second = DaemonProcess(home)
    second.wait_ready()
    result = control.call(home, "wait", trigger=trigger_id)
    assert result["outcome"] == "ok"
    outcomes = [r["outcome"] for r in runs(home, "slow")]
    assert outcomes == ["lost", "ok"]
    with sqlite3.connect(home / "orchestrator.db") as db:
        assert db.execute("SELECT done, outcome, run_id FROM triggers").fetchall() == [(1, "ok", result["run_id"])]
    assert second.terminate() == 0
