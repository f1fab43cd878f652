"""The engine in this process, driven through its own loop: real processes, real SQLite."""
from __future__ import annotations

import json
import os
import signal
import time
from aios.spec import replace
from pathlib import Path

from aios.lifecycle import Woke
from aios.spec import JobState, Status
from aios.store import open_store

from .conftest import (drive, events, insert_trigger, pause, pid_alive, runs, running_engine,
                       wait_until, write_home)

ECHO_PROGRAM = {"echo.py": """
    import json, os, sys

    def main(*args, **kwargs):
        out = os.path.join(os.environ["AIOS_HOME"], "echo-" + os.environ["AIOS_RUN_ID"] + ".json")
        with open(out, "w") as f:
            json.dump({"args": list(args), "kwargs": kwargs, "argv": sys.argv}, f)
"""}


def status(engine, name: str) -> Status:
    return engine.jobs[name].state.status


def pid_of(engine, name: str):
    return engine.jobs[name].state.pid


def finished_runs(home: Path, job: str) -> list[dict]:
    return [r for r in runs(home, job) if r["ended"] is not None]


# ---------------------------------------------------------------- always jobs

def test_killed_always_job_comes_back_with_a_new_pid(home):
    write_home(home, """
        [jobs.sleeper]
        type = "always"
        command = ["sleep", "1000"]
        min_uptime = "0s"
    """)
    with running_engine(home) as engine:
        first = drive(engine, lambda: pid_of(engine, "sleeper"), what="first pid")
        os.kill(first, signal.SIGKILL)
        second = drive(engine, lambda: pid_of(engine, "sleeper") not in (None, first) and pid_of(engine, "sleeper"),
                       what="a new pid")
        assert pid_alive(second) and not pid_alive(first)
        assert engine.jobs["sleeper"].state.restarts == 1
        killed = runs(home, "sleeper")[0]
        assert (killed["outcome"], killed["signal"]) == ("killed", signal.SIGKILL)


def test_stop_start_restart_disable_enable(home):
    write_home(home, """
        [jobs.svc]
        type = "always"
        command = ["sleep", "1000"]
    """)
    with running_engine(home) as engine:
        first = drive(engine, lambda: pid_of(engine, "svc"))
        engine.ops.restart("svc")
        second = drive(engine, lambda: pid_of(engine, "svc") not in (None, first) and pid_of(engine, "svc"))
        assert not pid_alive(first)
        assert engine.jobs["svc"].state.restarts == 0, "a requested restart is not a crash restart"
        engine.ops.stop("svc")
        drive(engine, lambda: status(engine, "svc") is Status.STOPPED)
        assert not pid_alive(second)
        engine.ops.start("svc")
        third = drive(engine, lambda: pid_of(engine, "svc"))
        engine.ops.disable("svc")
        drive(engine, lambda: status(engine, "svc") is Status.DISABLED)
        assert not pid_alive(third)
        stored = open_store(str(home / "orchestrator.db"), engine.device).load_states()["svc"]
        assert stored.enabled is False
        engine.ops.enable("svc")
        drive(engine, lambda: status(engine, "svc") is Status.RUNNING)
        assert [r["outcome"] for r in finished_runs(home, "svc")] == ["stopped"] * 3


def test_sigterm_ignoring_job_is_killed_with_its_grandchildren(home):
    write_home(home, """
        [jobs.stubborn]
        type = "always"
        command = ["sh", "-c", "trap '' TERM; sleep 1000 & echo $! > grandchild.pid; wait"]
        stop_timeout = "300ms"
    """)
    with running_engine(home) as engine:
        leader = drive(engine, lambda: pid_of(engine, "stubborn"))
        grandchild = int(drive(engine, lambda: (home / "grandchild.pid").exists()
                               and (home / "grandchild.pid").read_text().strip()))
        engine.ops.stop("stubborn")
        drive(engine, lambda: status(engine, "stubborn") is Status.STOPPED, what="SIGKILL after stop_timeout")
        assert not pid_alive(leader)
        wait_until(lambda: not pid_alive(grandchild), what="the grandchild to die of its SIGKILL")
        assert events(home, "stop_timeout")
        assert runs(home, "stubborn")[0]["signal"] == signal.SIGKILL


def test_job_environment(home):
    write_home(home, """
        [jobs.envdump]
        type = "trigger"
        command = ["sh", "-c", "env > env.txt"]
        env = { GREETING = "hello" }
    """)
    with running_engine(home) as engine:
        trigger_id = engine.ops.trigger("envdump")
        drive(engine, lambda: finished_runs(home, "envdump"))
        env = dict(line.split("=", 1) for line in (home / "env.txt").read_text().splitlines() if "=" in line)
        run = runs(home, "envdump")[0]
        assert env["AIOS_JOB"] == "envdump" and env["AIOS_RUN_ID"] == str(run["id"])
        assert env["AIOS_DEVICE_ID"] == engine.device and env["AIOS_HOME"] == str(home)
        assert env["GREETING"] == "hello"
        assert run["trigger_id"] == trigger_id


# ---------------------------------------------------------------- scheduled jobs

def test_interval_job_runs_on_time_and_never_overlaps(home):
    write_home(home, """
        [jobs.tick]
        type = "interval"
        every = "200ms"
        command = ["sleep", "0.05"]

        [jobs.slow]
        type = "interval"
        every = "100ms"
        command = ["sleep", "0.35"]
    """)
    with running_engine(home) as engine:
        drive(engine, lambda: len(finished_runs(home, "tick")) >= 6 and len(finished_runs(home, "slow")) >= 3)
    tick = finished_runs(home, "tick")
    lateness = [r["started"] - r["due"] for r in tick[1:]]
    assert all(0 <= late < 0.5 for late in lateness), lateness  # liveness bound only
    dues = [r["due"] for r in tick]
    # the grid is kept on the boot clock; shown as wall times it carries the few µs between reading the two clocks
    assert all(abs((b - a) - 0.2) < 1e-3 for a, b in zip(dues, dues[1:])), "on-time runs keep a 200 ms grid"
    slow = finished_runs(home, "slow")
    for before, after in zip(slow, slow[1:]):
        assert after["started"] >= before["ended"], "an interval job overlapped itself"


def test_daily_job_missed_while_down_runs_once_at_start(home):
    write_home(home, """
        [jobs.report]
        type = "daily"
        time = "00:00"
        command = ["true"]

        [jobs.skipper]
        type = "daily"
        time = "00:00"
        catch_up = "skip"
        command = ["true"]
    """)
    three_days_ago = time.time() - 3 * 86400
    store = open_store(str(home / "orchestrator.db"), os.environ.get("DEVICE_ID") or os.uname().nodename)
    for name in ("report", "skipper"):
        store.save_state(JobState(job=name, last_slot=three_days_ago))
    store.close()
    with running_engine(home) as engine:
        drive(engine, lambda: finished_runs(home, "report"))
        pause(engine, 0.3)
        assert len(runs(home, "report")) == 1 and runs(home, "skipper") == []
        for name in ("report", "skipper"):
            state = engine.jobs[name].state
            assert state.status is Status.WAITING and state.next_due > time.time()
            assert state.last_slot > time.time() - 86400
    assert len(events(home, "runs_missed")) == 2


def test_random_daily_draw_is_stored_and_survives_a_restart(home):
    write_home(home, """
        [jobs.lucky]
        type = "random_daily"
        after = "00:00"
        before = "23:59"
        command = ["true"]
    """)
    with running_engine(home) as engine:
        first = engine.jobs["lucky"].state
    assert first.draw_day and first.draw_at and first.next_due == first.draw_at
    for _ in range(2):
        with running_engine(home) as engine:
            again = engine.jobs["lucky"].state
            assert (again.draw_day, again.draw_at) == (first.draw_day, first.draw_at)


def test_random_daily_runs_its_draw(home):
    write_home(home, """
        [jobs.lucky]
        type = "random_daily"
        after = "00:00"
        before = "23:59"
        command = ["true"]
    """)
    with running_engine(home) as engine:
        job = engine.jobs["lucky"]
        soon = time.time() + 0.3
        job.state = replace(job.state, draw_at=soon)
        engine.handle(job, Woke())
        drive(engine, lambda: finished_runs(home, "lucky"))
        assert runs(home, "lucky")[0]["due"] == soon
        assert job.state.draw_day != time.strftime("%Y-%m-%d") or job.state.draw_at > soon


# ---------------------------------------------------------------- triggers

def test_trigger_row_args_reach_the_function_unchanged(home):
    write_home(home, """
        [jobs.echo]
        type = "trigger"
        program = "echo.py:main"
    """, ECHO_PROGRAM)
    hostile = ["a b", "; rm -rf / #", "$(touch pwned)", "'\"`"]
    with running_engine(home) as engine:
        trigger_id = insert_trigger(home, "echo", json.dumps(hostile), json.dumps({"model": "small"}))
        drive(engine, lambda: finished_runs(home, "echo"), what="the triggered run")
        run = runs(home, "echo")[0]
        out = json.loads((home / f"echo-{run['id']}.json").read_text())
        assert out["args"] == hostile and out["kwargs"] == {"model": "small"}
        assert run["trigger_id"] == trigger_id and run["outcome"] == "ok"
        assert not (home / "pwned").exists()


def test_triggers_run_fifo_within_max_parallel(home):
    write_home(home, """
        [jobs.worker]
        type = "trigger"
        max_parallel = 2
        command = ["sh", "-c", "sleep 0.2; echo $1 >> order.txt", "worker"]
    """)
    with running_engine(home) as engine:
        ids = [engine.ops.trigger("worker", [str(i)]) for i in range(6)]
        most = []
        drive(engine, lambda: most.append(len(engine.jobs["worker"].runs)) or len(finished_runs(home, "worker")) == 6)
    assert max(most) == 2
    done = runs(home, "worker")
    assert [r["trigger_id"] for r in sorted(done, key=lambda r: r["started"])] == ids
    import sqlite3

    with sqlite3.connect(home / "orchestrator.db") as db:
        rows = db.execute("SELECT id, done, outcome FROM triggers ORDER BY id").fetchall()
    assert rows == [(i, 1, "ok") for i in ids]


def test_restart_rows_of_the_original_control_path(home):
    write_home(home, """
        [jobs.a]
        type = "always"
        command = ["sleep", "1000"]

        [jobs.b]
        type = "always"
        command = ["sleep", "1000"]
    """)
    with running_engine(home) as engine:
        a1 = drive(engine, lambda: pid_of(engine, "a"))
        b1 = drive(engine, lambda: pid_of(engine, "b"))
        insert_trigger(home, "RESTART_a")
        a2 = drive(engine, lambda: pid_of(engine, "a") not in (None, a1) and pid_of(engine, "a"))
        assert pid_of(engine, "b") == b1
        insert_trigger(home, "RESTART_ALL")
        drive(engine, lambda: pid_of(engine, "a") not in (None, a2) and pid_of(engine, "b") not in (None, b1))
        insert_trigger(home, "no_such_job")   # acknowledged work for a job that is not (yet) there: it waits
        missing = drive(engine, lambda: [j for j in engine.ops.status() if j["name"] == "no_such_job"])
        assert missing[0]["status"] == "missing" and "1 trigger(s) wait for it" in missing[0]["why"]


# ---------------------------------------------------------------- config

def test_bad_job_is_reported_and_skipped_while_others_run(home):
    write_home(home, """
        [jobs.good]
        type = "always"
        command = ["sleep", "1000"]

        [jobs.bad]
        type = "daily"
        time = "25:00"
        command = ["true"]
    """)
    with running_engine(home) as engine:
        drive(engine, lambda: pid_of(engine, "good"))
        assert "bad" not in engine.jobs
    problems = [e["message"] for e in events(home, "config_error")]
    assert problems == ["job 'bad': time: '25:00' is not a time of day; use \"HH:MM\" from 00:00 to 23:59"]


def test_device_tags_filter_jobs(home, monkeypatch):
    write_home(home, """
        [jobs.gpu_job]
        type = "always"
        tags = ["gpu"]
        command = ["sleep", "1000"]
    """)
    monkeypatch.setenv("DEVICE_TAGS", "cpu")
    with running_engine(home) as engine:
        drive(engine, lambda: status(engine, "gpu_job") is Status.INELIGIBLE)
        assert engine.jobs["gpu_job"].state.why == "tag missing on this device: gpu"
    monkeypatch.setenv("DEVICE_TAGS", "cpu, gpu")
    monkeypatch.setenv("DEVICE_ID", "lab-7")
    with running_engine(home) as engine:
        drive(engine, lambda: status(engine, "gpu_job") is Status.RUNNING)
        assert runs(home, "gpu_job")[0]["device"] == "lab-7"


def test_job_output_goes_to_its_log_and_is_rotated(home):
    write_home(home, """
        [logs]
        max_size = "20KB"
        keep = 2

        [jobs.chatty]
        type = "always"
        command = ["sh", "-c", "while true; do echo 0123456789012345678901234567890123456789; done"]
    """)
    log = home / "logs" / "chatty.log"
    with running_engine(home) as engine:
        drive(engine, lambda: events(home, "log_rotated") and (home / "logs" / "chatty.log.2").exists(),
              what="two rotations")
        sizes = [p.stat().st_size for p in log.parent.glob("chatty.log*")]
    assert len(sizes) <= 3
    assert (home / "logs" / "chatty.log.1").read_text().startswith("0123456789")
