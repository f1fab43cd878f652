"""`aios status` as a health check on a real daemon: its exit code (0 fine, 4 a job failed
or invalid, 3 no daemon), what it shows of the pids a dead daemon recorded, and the
reason of a job that aios.toml names but cannot run (which `up -d` names too)."""
from __future__ import annotations

import os
import signal

from .conftest import pid_alive, wait_until, write_home
from .test_cli import READY, aios, always, daemon, ok, running_pids, status, table_rows  # noqa: F401

CRASH = '\n[jobs.crash]\ntype = "always"\ncommand = ["sh", "-c", "exit 1"]\nretries = 1\nbackoff = "10ms"\n'
BAD = '\n[jobs.bad]\ntype = "daily"\ntime = "25:00"\ncommand = ["true"]\n'
BAD_WHY = "invalid in aios.toml: job 'bad': time: '25:00' is not a time of day; use \"HH:MM\" from 00:00 to 23:59"


def test_status_exits_4_while_a_job_is_failed_and_says_so_in_its_help(home, daemon):
    write_home(home, always("svc", "sleep", "100000"))
    daemon.up()
    wait_until(lambda: "svc" in running_pids(home), what="svc running")
    assert aios(home, "status").returncode == 0

    ok(aios(home, "add", "crash", "--type", "always", "--retries", "1", "--", "sh", "-c", "exit 1"))
    wait_until(lambda: status(home)["crash"]["status"] == "failed", what="crash failed")
    failed = aios(home, "status")
    assert failed.returncode == 4 and table_rows(failed.stdout)["crash"]["STATUS"] == "failed"
    assert aios(home, "status", "--json").returncode == 4
    assert aios(home, "status", "svc").returncode == 0, "only the jobs shown count"
    ok(aios(home, "disable", "crash"))
    assert aios(home, "status").returncode == 0, "a disabled job is not failed"

    helped = ok(aios(home, "status", "--help"))
    assert "Exits 0 when every job is as it should be, 4 when a job is failed" in " ".join(helped.split())
    assert "4 (status) a job is failed or invalid" in " ".join(ok(aios(home, "--help")).split())


def test_with_the_daemon_down_a_recorded_pid_is_checked_in_proc(home, daemon):
    write_home(home, always("svc", "sleep", "100000") + always("other", "sleep", "100000"))
    pid = daemon.up()
    jobs = wait_until(lambda: len(running_pids(home)) == 2 and running_pids(home), what="both running")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), what="the daemon gone")
    assert pid_alive(jobs["svc"]), "its jobs outlive a killed daemon"

    shown = aios(home, "status")
    assert shown.returncode == 3 and shown.stderr == "aios: daemon not running; last recorded state\n"
    rows = table_rows(shown.stdout)
    assert (rows["svc"]["STATUS"], rows["svc"]["PID"]) == ("running", str(jobs["svc"]))
    assert rows["svc"]["WHY"] == "not supervised: the daemon is down (`aios up -d` adopts it)"

    os.killpg(jobs["other"], signal.SIGKILL)
    wait_until(lambda: not pid_alive(jobs["other"]), what="other's process gone")
    rows = table_rows(aios(home, "status").stdout)
    assert (rows["other"]["STATUS"], rows["other"]["PID"]) == ("unknown", f"{jobs['other']} gone")
    assert rows["other"]["WHY"] == f"recorded as running with pid {jobs['other']}, which is gone (the daemon is down)"

    daemon.up()
    adopted = wait_until(lambda: len(running_pids(home)) == 2 and running_pids(home), what="adopted and restarted")
    assert adopted["svc"] == jobs["svc"] and adopted["other"] != jobs["other"]


def test_a_job_invalid_in_aios_toml_shows_its_reason_with_the_daemon_up_and_down(home, daemon):
    write_home(home, always("svc", "sleep", "100000") + BAD)
    up = aios(home, "up", "-d")
    daemon.pids.append(int(READY.fullmatch(ok(up).rstrip("\n"))[1]))
    assert up.stderr == f"aios: ready; 1 job skipped (`aios status` shows why):\n  {BAD_WHY}\n"
    wait_until(lambda: "svc" in running_pids(home), what="svc running")
    for args in (("status",), ("status", "bad")):
        shown = aios(home, *args)
        assert shown.returncode == 4
        row = table_rows(shown.stdout)["bad"]
        assert (row["STATUS"], row["PID"], row["WHY"]) == ("invalid", "-", BAD_WHY)
    assert aios(home, "status", "svc").returncode == 0

    daemon.down()
    for args in (("status",), ("status", "bad")):
        shown = aios(home, *args)
        assert shown.returncode == 3
        bad = table_rows(shown.stdout)["bad"]
        assert (bad["STATUS"], bad["WHY"]) == ("invalid", BAD_WHY)
