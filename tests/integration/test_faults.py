"""Faults on a real daemon: a job that cannot be spawned, a second daemon, leaking
variables, a waiting client across a re-exec, rejected and orphaned triggers, and a
configuration changed while no daemon ran. Each ends with the daemon up and the other
jobs running."""
from __future__ import annotations

import json
import os
import signal
import sqlite3

import pytest

from aios import control

from .conftest import DaemonProcess, insert_trigger, pid_alive, wait_until, write_home
from .test_cli import Daemons, aios, ok, popen_aios, table_rows


@pytest.fixture
def daemons(home):
    made = Daemons(home)
    yield made
    made.teardown()


def job_status(home, name: str) -> dict:
    return control.call(home, "status", job=name)[0]


SPAWN_FAULTS = (("missing", "No such file or directory (ENOENT)"), ("no_run_bit", "Permission denied (EACCES)"),
                ("not_a_program", "Exec format error (ENOEXEC)"), ("too_long", "Argument list too long (E2BIG)"),
                ("vanished_cwd", "No such file or directory (ENOENT)"))


def test_jobs_that_cannot_be_spawned_are_their_own_state_and_the_daemon_stays_up(home, daemons, tmp_path):
    (tmp_path / "not-executable").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "garbage").write_bytes(b"\x7fELF\x00 not really a program\n")
    (tmp_path / "garbage").chmod(0o755)
    (tmp_path / "gone").mkdir()
    huge = ", ".join(['"' + "x" * 120_000 + '"'] * 24)    # each under 128 KiB, together over the kernel's 2 MiB
    write_home(home, f"""
        [jobs.not_a_program]
        type = "always"
        command = ["{tmp_path / 'garbage'}"]
        retries = 2
        backoff = "50ms"

        [jobs.too_long]
        type = "always"
        command = ["true"]
        args = [{huge}]
        retries = 2
        backoff = "50ms"

        [jobs.missing]
        type = "always"
        command = ["/no/such/binary"]
        retries = 2
        backoff = "50ms"

        [jobs.no_run_bit]
        type = "always"
        command = ["{tmp_path / 'not-executable'}"]
        retries = 2
        backoff = "50ms"

        [jobs.vanished_cwd]
        type = "always"
        command = ["sleep", "1000"]
        cwd = "{tmp_path / 'gone'}"
        retries = 2
        backoff = "50ms"

        [jobs.fine]
        type = "always"
        command = ["sleep", "1000"]
    """)
    daemons.up()
    pid = wait_until(lambda: job_status(home, "vanished_cwd")["pid"], what="vanished_cwd running")
    fine = wait_until(lambda: job_status(home, "fine")["pid"], what="fine running")
    (tmp_path / "gone").rmdir()   # its folder vanishes under it; it dies; it cannot be started again
    os.kill(pid, signal.SIGKILL)
    for name, reason in SPAWN_FAULTS:
        state = wait_until(lambda: job_status(home, name)["status"] == "failed" and job_status(home, name),
                           what=f"{name} failed")
        assert reason in state["why"] and "2 times in a row" in state["why"], state["why"]
        assert "\n" not in state["why"]
    assert job_status(home, "fine")["status"] == "running" and job_status(home, "fine")["pid"] == fine
    rows = table_rows(aios(home, "status").stdout)
    for name, reason in SPAWN_FAULTS:
        assert rows[name]["STATUS"] == "failed" and reason in rows[name]["WHY"], rows[name]
    daemons.down()


def test_a_daemon_out_of_descriptors_fails_the_jobs_it_cannot_start_and_keeps_the_others(home):
    """EMFILE: the daemon is started with soft and hard RLIMIT_NOFILE at 40 (it cannot raise
    them) and 30 always jobs; each running one holds a descriptor of the daemon."""
    write_home(home, "".join(f'[jobs.s{i:02d}]\ntype = "always"\ncommand = ["sleep", "100000"]\nretries = 2\n'
                             'backoff = "50ms"\n\n' for i in range(30)))
    daemon = DaemonProcess(home, nofile=40)
    daemon.wait_ready()
    jobs = wait_until(lambda: _settled(home), what="every job running or failed")
    failed = {name: job["why"] for name, job in jobs.items() if job["status"] == "failed"}
    running = {name: job["pid"] for name, job in jobs.items() if job["status"] == "running"}
    assert failed and running, jobs
    for why in failed.values():
        assert "Too many open files (EMFILE)" in why and "2 times in a row" in why and "\n" not in why, why
    name = next(iter(running))
    os.kill(running[name], signal.SIGKILL)    # supervision goes on: its exit is seen, it is started again
    jobs = wait_until(lambda: (jobs := _settled(home)) and jobs[name]["pid"] != running[name] and jobs,
                      what=f"{name} seen to exit")
    assert jobs[name]["status"] == "running" or "Too many open files (EMFILE)" in jobs[name]["why"], jobs[name]
    assert {n: j["pid"] for n, j in jobs.items() if n in running and n != name} == \
        {n: pid for n, pid in running.items() if n != name}
    assert daemon.terminate() == 0
    assert "internal error" not in daemon.output()


def _settled(home) -> dict | None:
    jobs = {job["name"]: job for job in control.call(home, "status")}
    return jobs if all(job["status"] in ("running", "failed") for job in jobs.values()) else None


def test_a_second_daemon_is_refused_even_with_the_pid_file_deleted(home):
    write_home(home, """
        [jobs.svc]
        type = "always"
        command = ["sleep", "1000"]
    """)
    first = DaemonProcess(home)
    first.wait_ready()
    (home / "aios.pid").unlink()      # what `git clean -fX` or a tidy user does
    second = DaemonProcess(home)
    assert second.proc.wait(30) == 1
    assert f"another AIOS daemon (pid ?) is already running for {home}" in second.output()
    assert pid_alive(first.pid)
    assert first.terminate() == 0


def test_no_control_variable_or_descriptor_of_the_daemon_reaches_a_job(home, daemons):
    write_home(home, """
        [jobs.probe]
        type = "trigger"
        command = ["sh", "-c", "env > env-$AIOS_RUN_ID.txt; ls /proc/self/fd > fds-$AIOS_RUN_ID.txt"]
    """)
    daemons.up()
    for _ in range(2):
        trigger = int(ok(aios(home, "trigger", "probe", "--wait")))
        run_id = control.call(home, "history", job="probe", limit=1)[0]["id"]
        env = (home / f"env-{run_id}.txt").read_text()
        assert "AIOS_READY_FD" not in env and "AIOS_REEXEC_FDS" not in env, env
        fds = sorted(int(fd) for fd in (home / f"fds-{run_id}.txt").read_text().split())
        assert fds[:3] == [0, 1, 2] and len(fds) <= 4, f"trigger {trigger}: inherited descriptors {fds}"
        ok(aios(home, "reexec"))


def test_trigger_wait_keeps_the_runs_own_exit_code_across_a_reexec(home, daemons):
    write_home(home, """
        [jobs.slow]
        type = "trigger"
        command = ["sh", "-c", "touch started; sleep 1; exit 7"]
    """)
    daemons.up()
    waiting = popen_aios(home, "trigger", "slow", "--wait")
    wait_until(lambda: (home / "started").exists(), what="the run to start")
    ok(aios(home, "reexec"))
    assert waiting.wait(60) == 7, waiting.stderr.read().decode()
    assert "failed" in waiting.stderr.read().decode()


def test_a_trigger_that_can_never_run_is_refused_or_rejected_never_left_waiting(home, daemons):
    write_home(home, """
        [jobs.cmd]
        type = "trigger"
        command = ["echo"]
    """)
    daemons.up()
    with pytest.raises(control.AiosError, match="trigger of 'cmd': argument 1 contains a NUL byte"):
        control.call(home, "trigger", job="cmd", args=["a\0b"])
    with sqlite3.connect(home / "orchestrator.db") as db:
        assert db.execute("SELECT COUNT(*) FROM triggers").fetchone()[0] == 0, "a refused trigger is not stored"
    row = insert_trigger(home, "cmd", json.dumps(["x\0y"]))     # another program's row
    result = control.call(home, "wait", trigger=row)
    assert result["outcome"] == "rejected: trigger of 'cmd': argument 1 contains a NUL byte"
    kwargs_row = insert_trigger(home, "cmd", "[]", json.dumps({"k": 1}))
    assert control.call(home, "wait", trigger=kwargs_row)["outcome"].startswith("rejected: job 'cmd' runs a command")
    assert control.call(home, "ping")["jobs"] == 1, "the daemon is up"


def test_triggers_of_a_job_with_a_config_typo_wait_and_run_when_it_is_fixed(home, daemons):
    good = """
        [jobs.work]
        type = "trigger"
        command = ["sh", "-c", "echo $1 >> done.txt", "work"]
    """
    write_home(home, good + "\n        [jobs.svc]\n        type = \"always\"\n"
                            "        command = [\"sleep\", \"1000\"]\n")
    daemons.up()
    daemons.down()
    insert_trigger(home, "work", json.dumps(["one"]))
    insert_trigger(home, "work", json.dumps(["two"]))
    text = (home / "aios.toml").read_text()
    (home / "aios.toml").write_text(text.replace('command = ["sh"', 'comand = ["sh"'))
    daemons.up()
    row = wait_until(lambda: [j for j in control.call(home, "status") if j["name"] == "work"], what="work listed")[0]
    assert row["status"] == "invalid" and "2 trigger(s) wait for it" in row["why"] and "comand" in row["why"]
    listed = json.loads(ok(aios(home, "triggers", "--json")))
    assert [t["args"] for t in listed] == [["one"], ["two"]] and "invalid in aios.toml" in listed[0]["why"]
    (home / "aios.toml").write_text(text)
    ok(aios(home, "apply"))
    wait_until(lambda: (home / "done.txt").exists() and (home / "done.txt").read_text() == "one\ntwo\n",
               what="both triggers to run")
    assert job_status(home, "svc")["status"] == "running"


def test_triggers_drop_is_the_only_way_queued_work_leaves_unrun(home, daemons):
    write_home(home, """
        [jobs.svc]
        type = "always"
        command = ["sleep", "1000"]
    """)
    daemons.up()
    first = insert_trigger(home, "ghost")
    insert_trigger(home, "ghost")
    wait_until(lambda: any(j["name"] == "ghost" for j in control.call(home, "status")), what="ghost listed")
    assert ok(aios(home, "triggers", "drop", "ghost", str(first))) == "1 trigger(s) of 'ghost' dropped\n"
    assert ok(aios(home, "triggers", "drop", "ghost")) == "1 trigger(s) of 'ghost' dropped\n"
    assert aios(home, "triggers", "drop", "ghost").returncode == 1
    with sqlite3.connect(home / "orchestrator.db") as db:
        assert db.execute("SELECT outcome FROM triggers").fetchall() == [("dropped",), ("dropped",)]


def test_an_always_job_whose_config_changed_while_no_daemon_ran_restarts_on_the_new_one(home):
    write_home(home, """
        [jobs.changed]
        type = "always"
        command = ["sleep", "1001"]

        [jobs.same]
        type = "always"
        command = ["sleep", "1002"]
    """)
    first = DaemonProcess(home)
    first.wait_ready()
    pids = wait_until(lambda: _running(home) if len(_running(home)) == 2 else None, what="two running jobs")
    first.kill()
    text = (home / "aios.toml").read_text().replace('"1001"', '"1003"')
    (home / "aios.toml").write_text(text)
    second = DaemonProcess(home)
    second.wait_ready()
    new = wait_until(lambda: (_running(home).get("changed") not in (None, pids["changed"])) and _running(home),
                     what="the changed job restarted")
    assert new["same"] == pids["same"], "an unchanged job is adopted, not restarted"
    with open(f"/proc/{new['changed']}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"1003"]
    assert not pid_alive(pids["changed"])
    assert second.terminate() == 0


def _running(home) -> dict:
    with sqlite3.connect(home / "orchestrator.db") as db:
        return dict(db.execute("SELECT job, pid FROM job_state WHERE status = 'running' AND pid IS NOT NULL"))


def test_aios_signal_reaches_the_whole_process_group(home, daemons):
    write_home(home, """
        [jobs.reloader]
        type = "always"
        command = ["sh", "-c", "trap 'echo reloaded >> hups.txt' HUP; while true; do sleep 0.05; done"]
    """)
    daemons.up()
    pid = wait_until(lambda: job_status(home, "reloader")["pid"], what="reloader running")
    assert ok(aios(home, "signal", "reloader", "HUP")) == f"reloader: HUP sent to pid {pid}\n"
    wait_until(lambda: (home / "hups.txt").exists(), what="the trap to run")
    assert job_status(home, "reloader")["pid"] == pid, "a signal is not a restart"
    bad = aios(home, "signal", "reloader", "NOPE")
    assert bad.returncode == 1 and "is not a signal name" in bad.stderr
