"""Jobs that misbehave, against a real daemon: one that ignores SIGTERM, one that forks
grandchildren and exits, one that closes its output and spins, one that writes 1 GB of
output, one that crash-loops, one that hangs past its timeout. The daemon stays in
charge of each, and stays responsive and cheap while they misbehave."""
from __future__ import annotations

import glob
import os
import signal
import sqlite3
import threading
import time

import pytest

from aios import control
from tests.integration.conftest import DaemonProcess, pid_alive, processes_with_home, wait_until, write_home

from .conftest import cpu_seconds, figures

pytestmark = pytest.mark.chaos

MIB = 1024 * 1024


def status(home, job: str) -> dict:
    return control.call(home, "status", job=job)[0]


def last_run(home, job: str) -> dict:
    return control.call(home, "history", job=job, limit=1)[0]


def start(home, toml: str, programs: dict | None = None) -> DaemonProcess:
    write_home(home, toml, programs)
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    return daemon


def stop_daemon(daemon: DaemonProcess, home) -> None:
    assert daemon.terminate() == 0
    assert processes_with_home(home) == []


def test_a_job_that_ignores_sigterm_is_killed_after_its_stop_timeout(home):
    daemon = start(home, """
[jobs.stubborn]
type = "always"
program = "stubborn.py:main"
stop_timeout = "1s"
""", {"stubborn.py": """
    import signal, time

    def main():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        while True:
            time.sleep(1)
"""})
    pid = wait_until(lambda: status(home, "stubborn")["pid"])
    wait_until(lambda: "ignoring SIGTERM" in (home / "logs" / "stubborn.log").read_text())
    control.call(home, "stop", job="stubborn")
    wait_until(lambda: status(home, "stubborn")["status"] == "stopped", what="the stubborn job stopped")
    assert not pid_alive(pid)
    run = last_run(home, "stubborn")
    assert (run["outcome"], run["signal"]) == ("stopped", signal.SIGKILL)
    assert "stop_timeout stubborn: pid %d still running 1 s after the stop signal" % pid in daemon.output()
    stop_daemon(daemon, home)


def test_grandchildren_die_with_their_job_when_it_exits(home):
    daemon = start(home, """
[jobs.forker]
type = "trigger"
program = "forker.py:main"
""", {"forker.py": """
    import os, subprocess

    def main():
        kids = [subprocess.Popen(["sleep", "100000"]) for _ in range(3)]
        kids.append(subprocess.Popen(["sh", "-c", "trap '' TERM HUP; sleep 100000"]))
        with open(os.path.join(os.environ["AIOS_HOME"], "kids.txt"), "w") as f:
            f.write(" ".join(str(k.pid) for k in kids))
"""})
    result = control.call(home, "wait", trigger=control.call(home, "trigger", job="forker"))
    assert (result["outcome"], result["exit_code"]) == ("ok", 0)
    kids = [int(pid) for pid in (home / "kids.txt").read_text().split()]
    wait_until(lambda: not any(pid_alive(pid) for pid in kids), what="the grandchildren to die with the group")
    assert processes_with_home(home) == []
    stop_daemon(daemon, home)


def test_a_job_that_closes_its_output_and_spins_is_still_stoppable(home):
    daemon = start(home, """
[jobs.spinner]
type = "always"
program = "spinner.py:main"
""", {"spinner.py": """
    import os

    def main():
        os.close(1)
        os.close(2)
        while True:
            pass
"""})
    pid = wait_until(lambda: status(home, "spinner")["pid"])
    wait_until(lambda: cpu_seconds(pid) > 0.5, what="the spinner to burn CPU")
    assert control.call(home, "ping")["pid"] == daemon.pid, "the daemon answers while a job spins"
    control.call(home, "stop", job="spinner")
    wait_until(lambda: status(home, "spinner")["status"] == "stopped")
    assert not pid_alive(pid)
    assert (last_run(home, "spinner")["outcome"], last_run(home, "spinner")["signal"]) == ("stopped", signal.SIGTERM)
    stop_daemon(daemon, home)


def test_a_job_writing_1_gb_keeps_its_logs_bounded(home):
    """The job writes 1 GiB as fast as it can (hundreds of MB a second here) with
    [logs] max_size = 1MB and keep = 2. While it writes, the total size of its log files
    is sampled every 5 ms: it stays bounded by the rotated copies plus what the job can
    write while the daemon looks (the log is checked every 10 ms while it floods, plus
    the time one rotation takes, which the kernel's writeback can stretch), whatever it
    wrote: here tens of MiB, at worst a few hundred; asserted: under half of what it
    wrote. Before the fix it reached 2 GiB (the rotation copy chased the writer)."""
    daemon = start(home, """
[logs]
max_size = "1MB"
keep = 2

[jobs.flood]
type = "trigger"
program = "flood.py:main"
""", {"flood.py": """
    import os

    def main():
        line = b"x" * 1023 + b"\\n"
        block = line * 64
        for _ in range(16 * 1024):       # 1 GiB in 64 KiB writes
            os.write(1, block)
"""})
    peak, samples, stop = [0], [0], threading.Event()

    def sample():
        while not stop.is_set():
            total = 0
            for path in glob.glob(str(home / "logs" / "flood.log*")):
                try:
                    total += os.stat(path).st_size
                except FileNotFoundError:
                    pass
            peak[0], samples[0] = max(peak[0], total), samples[0] + 1
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    cpu_before = cpu_seconds(daemon.pid)
    try:
        result = control.call(home, "wait", trigger=control.call(home, "trigger", job="flood"))
    finally:
        stop.set()
        sampler.join()
    run = last_run(home, "flood")
    seconds = run["ended"] - run["started"]
    rate = 1024 * MIB / seconds
    rotated = [os.path.getsize(p) for p in glob.glob(str(home / "logs" / "flood.log.*"))]
    figures("1 GiB of output", written_mib=1024, seconds=round(seconds, 2), mib_per_s=round(rate / MIB),
            peak_total_mib=round(peak[0] / MIB, 1), nominal_mib=3, samples=samples[0],
            daemon_cpu_s=round(cpu_seconds(daemon.pid) - cpu_before, 2),
            rotated_files_kib=[round(size / 1024) for size in rotated])
    assert result["outcome"] == "ok"
    assert peak[0] < 512 * MIB, f"logs reached {peak[0] / MIB:.0f} MiB for 1024 MiB written"
    assert len(rotated) <= 2 and all(size <= MIB + 200 for size in rotated)
    stop_daemon(daemon, home)


def test_a_crash_looping_job_backs_off_and_ends_failed_at_low_cpu(home):
    daemon = start(home, """
[jobs.crasher]
type = "always"
command = ["sh", "-c", "exit 3"]
retries = 6
backoff = "200ms"
failed_cooldown = "1h"
""")
    cpu_before = cpu_seconds(daemon.pid)
    wait_until(lambda: status(home, "crasher")["status"] == "failed", what="the crash loop verdict")
    cpu_used = cpu_seconds(daemon.pid) - cpu_before
    job = status(home, "crasher")
    with sqlite3.connect(home / "orchestrator.db") as db:
        starts = [ts for (ts,) in db.execute(
            "SELECT ts FROM events WHERE job = 'crasher' AND name = 'job_started' ORDER BY id")]
    gaps = [round(b - a, 2) for a, b in zip(starts, starts[1:])]
    figures("crash loop", starts=len(starts), gaps_s=gaps, daemon_cpu_s=round(cpu_used, 3), why=job["why"])
    assert len(starts) == 6
    assert all(later > earlier for earlier, later in zip(gaps, gaps[1:])), f"backoff grows: {gaps}"
    assert gaps[0] >= 0.15 and gaps[-1] >= 0.15 * 2 ** 4, f"backoff of 200ms doubling (minus jitter): {gaps}"
    assert job["why"].startswith("crash loop: 6 quick exits in a row")
    assert cpu_used < 1.0, f"the daemon used {cpu_used:.2f} s of CPU over a crash loop of {sum(gaps):.1f} s"
    time.sleep(1.0)
    assert len(control.call(home, "history", job="crasher", limit=100)) == 6, "no start after the verdict"
    stop_daemon(daemon, home)


def test_a_job_that_hangs_past_its_timeout_is_stopped(home):
    daemon = start(home, """
[jobs.hang]
type = "trigger"
command = ["sleep", "100000"]
timeout = "1s"

[jobs.hang_hard]
type = "trigger"
command = ["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"]
timeout = "1s"
stop_timeout = "1s"
""")
    soft = control.call(home, "trigger", job="hang")
    hard = control.call(home, "trigger", job="hang_hard")
    assert control.call(home, "wait", trigger=soft)["outcome"] == "timeout"
    assert (last_run(home, "hang")["outcome"], last_run(home, "hang")["signal"]) == ("timeout", signal.SIGTERM)
    assert control.call(home, "wait", trigger=hard)["outcome"] == "timeout"
    hard_run = last_run(home, "hang_hard")
    assert (hard_run["outcome"], hard_run["signal"]) == ("timeout", signal.SIGKILL)
    out = daemon.output()
    assert "timeout hang: pid" in out and "ran past its timeout of 1 s; stopping it" in out
    assert processes_with_home(home) == []
    stop_daemon(daemon, home)
