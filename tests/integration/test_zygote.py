"""Program jobs started through the zygote on real daemons: their arguments, environment,
cwd and logs, timeouts and stops, `aios status` saying how each was started, edits to
Programs/ between runs, a preload that starts a thread refused with its reason, a zygote
killed in the middle of a burst of triggers (no run lost, none doubled), and adoption
after a kill -9 of the daemon and across a re-exec."""
from __future__ import annotations

import collections
import json
import os
import re
import signal

from aios import control

from .conftest import (DaemonProcess, drive, events, pid_alive, processes_with_home, runs, running_engine,
                       wait_until, write_home)
from .test_cli import aios

PROGRAMS = {"jobs.py": """
    import json, os, sys, time

    def report(*args, **kwargs):
        out = os.path.join(os.environ["AIOS_HOME"], "report-" + os.environ["AIOS_RUN_ID"] + ".json")
        with open(out, "w") as f:
            json.dump({"args": list(args), "kwargs": kwargs, "cwd": os.getcwd(), "env": dict(os.environ),
                       "ppid": os.getppid(), "version": VERSION}, f)
        print("reported", os.environ["AIOS_RUN_ID"])

    VERSION = 1

    def count():
        print("run " + os.environ["AIOS_RUN_ID"], flush=True)
        time.sleep(0.05)

    def slow():
        time.sleep(1000)

    def serve():
        print("serving", os.getpid(), flush=True)
        time.sleep(1000)
"""}


def finished(home, job: str) -> list[dict]:
    return [r for r in runs(home, job) if r["ended"] is not None]


def warm(engine) -> None:
    """Until the zygotes the daemon began at its start are ready (a run asked for before
    is spawned: see the first test)."""
    drive(engine, lambda: not engine.processes.warming(), what="the zygote ready")


def report(home, run_id: int) -> dict:
    return json.loads((home / f"report-{run_id}.json").read_text())


def test_a_zygote_run_gets_its_arguments_env_cwd_and_log_and_status_says_how_it_started(home):
    write_home(home, """
        [jobs.rep]
        type = "trigger"
        program = "jobs.py:report"
        args = ["fixed"]
        env = { GREETING = "hello" }
        cwd = "work"

        [jobs.fresh]
        type = "trigger"
        program = "jobs.py:report"
        start = "spawn"

        [jobs.cmd]
        type = "trigger"
        command = ["true"]
    """, PROGRAMS)
    (home / "work").mkdir()
    with running_engine(home) as engine:
        warm(engine)
        for name in ("rep", "fresh", "cmd"):
            engine.ops.trigger(name, args=["a b"], kwargs={} if name == "cmd" else {"model": "small"})
            drive(engine, lambda n=name: finished(home, n), what=f"a run of {name}")
        first = finished(home, "rep")[0]
        seen = report(home, first["id"])
        assert seen["args"] == ["fixed", "a b"] and seen["kwargs"] == {"model": "small"}
        assert seen["cwd"] == str(home / "work") and seen["ppid"] == os.getpid()
        assert seen["env"]["GREETING"] == "hello" and seen["env"]["AIOS_RUN_ID"] == str(first["id"])
        assert seen["env"]["AIOS_JOB"] == "rep" and seen["env"]["AIOS_HOME"] == str(home)
        assert (home / "logs" / "rep.log").read_text().splitlines()[-1] == f"reported {first['id']}"
        shown = {name: engine.describe(engine.jobs[name]) for name in ("rep", "fresh", "cmd")}
        assert [(s["started"], s["start_note"]) for s in shown.values()] == [
            ("zygote", None), ("spawn", None), (None, None)]
        program = home / "Programs" / "jobs.py"
        program.write_text(program.read_text().replace("VERSION = 1", "VERSION = 22"))
        engine.ops.trigger("rep")
        drive(engine, lambda: len(finished(home, "rep")) == 2, what="the second run")
        assert report(home, finished(home, "rep")[1]["id"])["version"] == 22, "Programs/ edited between runs"
        assert engine.describe(engine.jobs["rep"])["started"] == "zygote"


def test_timeouts_and_stops_end_zygote_runs_and_their_groups(home):
    write_home(home, """
        [jobs.late]
        type = "trigger"
        program = "jobs.py:slow"
        timeout = "0.3s"

        [jobs.svc]
        type = "always"
        program = "jobs.py:serve"
    """, PROGRAMS)
    with running_engine(home) as engine:
        warm(engine)
        engine.ops.trigger("late")
        drive(engine, lambda: finished(home, "late"), what="the run past its timeout")
        assert finished(home, "late")[0]["outcome"] == "timeout"

        def forked():   # a lone always job starts spawned (sooner than its zygote); restarted, it forks
            shown = engine.describe(engine.jobs["svc"])
            if shown["status"] == "running" and shown["started"] == "spawn":
                engine.ops.restart("svc")
            return shown["status"] == "running" and shown["started"] == "zygote" and shown["pid"]

        pid = drive(engine, forked, what="svc forked from the zygote")
        drive(engine, lambda: "serving" in (home / "logs" / "svc.log").read_text(), what="svc's own code")
        engine.ops.stop("svc")
        ended = drive(engine, lambda: [r for r in finished(home, "svc") if r["pid"] == pid], what="svc stopped")
        assert ended[0]["outcome"] == "stopped" and not pid_alive(pid)


def test_a_preload_that_starts_a_thread_is_refused_and_its_runs_are_spawned(home):
    write_home(home, f"""
        [python]
        preload = ["threaded"]
        env = {{ PYTHONPATH = "{home / 'modules'}" }}

        [jobs.rep]
        type = "trigger"
        program = "jobs.py:report"
    """, PROGRAMS)
    (home / "modules").mkdir()
    (home / "modules" / "threaded.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(1000,), daemon=True).start()\n")
    with running_engine(home) as engine:
        warm(engine)
        for count in (1, 2):
            engine.ops.trigger("rep")
            drive(engine, lambda c=count: len(finished(home, "rep")) == c, what=f"run {count}")
        assert [r["outcome"] for r in finished(home, "rep")] == ["ok", "ok"]
        shown = engine.describe(engine.jobs["rep"])
        assert shown["started"] == "spawn" and "1 other thread(s) running" in shown["start_note"]
        refused = events(home, "zygote_refused")
        assert len(refused) == 1 and "OPENBLAS_NUM_THREADS" in refused[0]["message"]


def test_a_zygote_killed_in_a_burst_of_triggers_loses_and_doubles_no_run(home):
    write_home(home, """
        [jobs.burst]
        type = "trigger"
        program = "jobs.py:count"
        max_parallel = 3
    """, PROGRAMS)
    with running_engine(home) as engine:
        warm(engine)
        ids = [engine.ops.trigger("burst") for _ in range(30)]
        drive(engine, lambda: len(finished(home, "burst")) >= 5, what="the first runs")
        zygote = next(iter(engine.processes.zygotes.pids()))
        os.kill(zygote, signal.SIGKILL)
        drive(engine, lambda: len(finished(home, "burst")) == 30, what="every trigger's run")
        drive(engine, lambda: engine.loop.idle and not engine.jobs["burst"].runs, what="quiet")
        per_trigger = collections.Counter(r["trigger_id"] for r in runs(home, "burst"))
        assert sorted(per_trigger) == sorted(ids) and set(per_trigger.values()) == {1}
        assert {r["outcome"] for r in runs(home, "burst")} == {"ok"}
        printed = collections.Counter(re.findall(r"run (\d+)", (home / "logs" / "burst.log").read_text()))
        assert sorted(printed.values()) == [1] * 30, "each run's code ran once"
        assert events(home, "zygote_exited"), "the zygote's death was noticed"


def status(home, name: str) -> dict:
    return control.call(home, "status", job=name)[0]


def test_zygote_runs_are_adopted_after_a_kill_9_of_the_daemon_and_across_a_reexec(home):
    write_home(home, """
        [jobs.svc]
        type = "always"
        program = "jobs.py:serve"

        [jobs.rep]
        type = "trigger"
        program = "jobs.py:report"
    """, PROGRAMS)
    first = DaemonProcess(home)
    first.wait_ready()

    def forked():   # a lone always job starts spawned (sooner than its zygote); restarted, it forks
        shown = status(home, "svc")
        if shown["status"] == "running" and shown["started"] == "spawn":
            control.call(home, "restart", job="svc")
        return shown["status"] == "running" and shown["started"] == "zygote" and shown["pid"]

    pid = wait_until(forked, what="svc forked from the zygote")
    wait_until(lambda: "serving" in (home / "logs" / "svc.log").read_text(), what="svc's own code")
    row = aios(home, "status", "svc").stdout.splitlines()[-1]
    words = [word for word in row.split() if word != "!"]     # "!": runs as root only because no user is set
    assert words[:3] == ["svc", "always", "running"] and row.endswith("zygote"), "the table says so too"
    first.kill()
    assert pid_alive(pid), "a job outlives its crashed daemon"
    second = DaemonProcess(home)
    second.wait_ready()
    wait_until(lambda: status(home, "svc")["pid"] == pid and status(home, "svc")["status"] == "running",
               what="svc adopted")
    assert "job_adopted svc" in second.output()
    started = control.call(home, "ping")["started"]
    control.call(home, "reexec")
    wait_until(lambda: control.call(home, "ping")["started"] != started, what="the new image")
    assert status(home, "svc")["pid"] == pid

    def forked_run() -> bool:   # the first runs may come while the new image's zygote starts: spawned
        result = control.call(home, "wait", trigger=control.call(home, "trigger", job="rep"))
        assert result["outcome"] == "ok"
        return status(home, "rep")["started"] == "zygote"

    wait_until(forked_run, what="a run of rep forked from the new image's zygote")
    assert second.terminate() == 0
    assert processes_with_home(home) == [] and not pid_alive(pid)
