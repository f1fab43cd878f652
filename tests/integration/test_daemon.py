"""`python3 simple_orchestrator.py` as users run it: a real daemon process, real signals."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request

from .conftest import (ROOT, DaemonProcess, children_of, insert_trigger, pid_alive,
                       processes_with_home, runs, wait_until, write_home)

TEN_SLEEPERS = "".join(f"""
[jobs.sleeper{i}]
type = "always"
command = ["sleep", "100000"]
""" for i in range(10))


def job_pids(home) -> dict[str, int]:
    with sqlite3.connect(home / "orchestrator.db") as db:
        return dict(db.execute("SELECT job, pid FROM job_state WHERE status = 'running' AND pid IS NOT NULL"))


def test_help_and_bad_option():
    script = str(ROOT / "simple_orchestrator.py")
    shown = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and "--force" in shown.stdout
    bad = subprocess.run([sys.executable, script, "--forse"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "simple_orchestrator.py: unknown option '--forse'; use --force or --help"


def test_sigterm_stops_every_job_and_leaves_no_process_or_zombie(home):
    write_home(home, TEN_SLEEPERS + """
[jobs.forker]
type = "always"
command = ["sh", "-c", "sleep 100000 & sleep 100000 & wait"]
""")
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    wait_until(lambda: len(job_pids(home)) == 11, what="11 running jobs")
    wait_until(lambda: len(processes_with_home(home)) == 13, what="13 job processes")
    assert all(state != "Z" for _, state in children_of(daemon.pid))
    assert daemon.terminate() == 0
    assert processes_with_home(home) == []
    assert children_of(daemon.pid) == []
    assert all(r["outcome"] == "stopped" for r in runs(home))
    assert "daemon_stopped" in daemon.output()


def test_kill9_then_restart_adopts_the_same_processes(home):
    write_home(home, TEN_SLEEPERS)
    first = DaemonProcess(home)
    first.wait_ready()
    before = wait_until(lambda: len(job_pids(home)) == 10 and job_pids(home), what="10 running jobs")
    first.kill()
    assert all(pid_alive(pid) for pid in before.values()), "jobs outlive a crashed daemon"
    os.kill(before["sleeper3"], signal.SIGKILL)  # dies while no daemon watches it
    wait_until(lambda: not pid_alive(before["sleeper3"]), what="sleeper3 to die")
    second = DaemonProcess(home)
    second.wait_ready()
    after = wait_until(lambda: len(job_pids(home)) == 10 and job_pids(home), what="10 running jobs again")
    same = {name for name in before if after[name] == before[name]}
    assert same == set(before) - {"sleeper3"}
    assert after["sleeper3"] != before["sleeper3"] and pid_alive(after["sleeper3"])
    wait_until(lambda: len(processes_with_home(home)) == 10, what="exactly ten job processes")
    lost = [r for r in runs(home, "sleeper3") if r["outcome"] == "lost"]
    assert len(lost) == 1
    assert second.output().count("job_adopted") == 9
    assert second.terminate() == 0
    assert processes_with_home(home) == []


def test_a_second_daemon_for_the_same_home_is_refused(home):
    write_home(home, TEN_SLEEPERS)
    first = DaemonProcess(home)
    first.wait_ready()
    refused = subprocess.run([sys.executable, str(ROOT / "simple_orchestrator.py")],
                             env={**os.environ, "AIOS_HOME": str(home)}, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"aios: another AIOS daemon (pid {first.pid}) is already running for {home}"
    assert first.proc.poll() is None
    assert first.terminate() == 0


def test_force_clears_job_state_and_pending_triggers(home):
    write_home(home, """
[jobs.later]
type = "trigger"
command = ["true"]
enabled = false
""")
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    insert_trigger(home, "later")
    assert daemon.terminate() == 0
    forced = DaemonProcess(home, "--force")
    forced.wait_ready()
    assert "--force: cleared job state and 1 pending trigger(s)" in forced.output()
    with sqlite3.connect(home / "orchestrator.db") as db:
        assert db.execute("SELECT count(*) FROM triggers WHERE done = 0").fetchone() == (0,)
    assert forced.terminate() == 0


def test_first_start_writes_the_seven_jobs_and_serves_the_status_page(home, tmp_path):
    home.mkdir()
    daemon = DaemonProcess(home, env={"DEVICE_TAGS": "", "DEVICE_ID": "test-device"})
    daemon.wait_ready()
    assert (home / "aios.toml").exists()
    assert sorted(p.name for p in (home / "Programs").glob("*.py")) == [
        "backup.py", "idle_task.py", "llm_processor.py", "morning_report.py", "notify.py", "random_check.py",
        "stock_monitor.py", "web_server.py"]
    def states():   # ready comes first; the jobs are started (or found ineligible) right after
        with sqlite3.connect(home / "orchestrator.db") as db:
            found = dict(db.execute("SELECT job, status FROM job_state"))
        return found if found.get("stock_monitor") == found.get("llm_processor") == "ineligible" else None
    assert len(wait_until(states, what="the tagged jobs marked ineligible")) == 7
    page = wait_until(lambda: _fetch("http://127.0.0.1:8787/healthz"), what="the status page")
    assert page.strip() == "ok"
    assert "morning_report" in _fetch("http://127.0.0.1:8787/api/status", (home / "dashboard.token").read_text())
    wait_until(lambda: list((home / "backups").glob("orchestrator-*.db")), what="the first backup")
    assert daemon.terminate() == 0


def _fetch(url: str, token: str = "") -> str | None:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token.strip()}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as reply:
            return reply.read().decode()
    except OSError:
        return None
