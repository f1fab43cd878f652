"""python3 -m bench.restarts [--rounds N] [--seed S] [--keep]   (also: python3 test_restarts.py)

Restart resilience, as the original's test_restarts.py promised. A real daemon in a
temporary home runs two always jobs and a trigger job fed by a steady stream of
triggers over the control socket. Each round kill -9s the process of one always job (the
daemon must start a new one) and every second round kill -9s the daemon itself (the next
one must adopt the running jobs and the queue). Then every acknowledged trigger is waited
for, and it reports: triggers acknowledged, lost (acknowledged, never run), run more than
once, recorded as done other than once; the most copies of an always job alive at once
(sampled from /proc every 5 ms by tests/chaos/sampler.py; must be 1); how long a job and
the daemon took to come back. Exit 0 when nothing was lost and nothing ran twice at once.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from aios import control
from aios.errors import AiosError

from . import ROOT

SAMPLER = ROOT / "tests" / "chaos" / "sampler.py"
ALWAYS = ("svc_sleep", "svc_py")
LIVENESS = 60.0
JOBS = """
[jobs.svc_sleep]
type = "always"
command = ["sleep", "100000"]

[jobs.svc_py]
type = "always"
program = "svc.py:main"

[jobs.work]
type = "trigger"
max_parallel = 2
command = ["sh", "-c", 'echo "$1" >> "$AIOS_HOME/ran.txt"', "work"]
"""
PROGRAM = "import time\n\n\ndef main():\n    while True:\n        time.sleep(1)\n"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 test_restarts.py", description=__doc__.split("\n\n")[1])
    parser.add_argument("--rounds", type=int, default=10, help="rounds of kill -9 (default 10)")
    parser.add_argument("--seed", type=int, help="the random seed (default: a new one, printed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and say where it is")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    home = Path(tempfile.mkdtemp(prefix="aios-restarts-"))
    (home / "Programs").mkdir()
    (home / "aios.toml").write_text(JOBS)
    (home / "Programs" / "svc.py").write_text(PROGRAM)
    sampler = subprocess.Popen([sys.executable, str(SAMPLER), str(home), str(home / "copies.json"), "0.005", *ALWAYS])
    daemon = start_daemon(home)
    try:
        figures = run_rounds(home, daemon, args.rounds, random.Random(seed))
        daemon = figures.pop("daemon")
        figures.update(check_triggers(home, figures.pop("acked")))
    finally:
        stop(daemon)
        sampler.send_signal(signal.SIGTERM)
        sampler.wait(LIVENESS)
    figures["peaks"] = json.loads((home / "copies.json").read_text())["peak"]
    print(report(figures, args.rounds, seed))
    if args.keep:
        print(f"home kept: {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    return 0 if verdict(figures) == "OK" else 1


# ---------------------------------------------------------------- the daemon

def start_daemon(home: Path) -> subprocess.Popen:
    with open(home / "daemon.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "simple_orchestrator.py")], cwd=home,
                                env={**os.environ, "AIOS_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=log)
    wait_for(lambda: _ping(home) == proc.pid, f"the daemon (pid {proc.pid}) to answer", proc)
    return proc


def _ping(home: Path) -> int | None:
    try:
        return control.call(home, "ping")["pid"]
    except (AiosError, OSError):
        return None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(LIVENESS)


def wait_for(predicate, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + LIVENESS
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"test_restarts: the daemon exited (status {proc.returncode}) while waiting for {what}")
        time.sleep(0.005)
    raise SystemExit(f"test_restarts: timed out after {LIVENESS:g} s waiting for {what}")


def running(home: Path) -> dict[str, int]:
    try:
        return {j["name"]: j["pid"] for j in control.call(home, "status") if j["status"] == "running"}
    except (AiosError, OSError):
        return {}


# ---------------------------------------------------------------- the rounds

def run_rounds(home: Path, daemon: subprocess.Popen, rounds: int, rng: random.Random) -> dict:
    load = TriggerLoad(home)
    load.thread.start()
    job_ms, daemon_ms = [], []
    try:
        for n in range(rounds):
            job_ms.append(kill_a_job(home, rng.choice(ALWAYS), daemon))
            if n % 2 == 1:
                began = time.monotonic()
                os.kill(daemon.pid, signal.SIGKILL)
                daemon.wait(LIVENESS)
                daemon = start_daemon(home)
                wait_for(lambda: set(ALWAYS) <= set(running(home)), "the always jobs after the restart", daemon)
                daemon_ms.append((time.monotonic() - began) * 1000)
    finally:
        load.stop.set()
        load.thread.join(LIVENESS)
    return {"daemon": daemon, "acked": load.acked, "job_ms": job_ms, "daemon_ms": daemon_ms,
            "cut_off": load.cut_off}


def kill_a_job(home: Path, name: str, daemon: subprocess.Popen) -> float:
    """kill -9 the job's process group; the ms until a new process of it runs."""
    pid = wait_for(lambda: running(home).get(name), f"{name} to run", daemon)
    began = time.monotonic()
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: running(home).get(name) not in (None, pid), f"{name} to be restarted", daemon)
    return (time.monotonic() - began) * 1000


class TriggerLoad:
    """A thread queueing a trigger of `work` every 20 ms, each with a unique token; one is
    acknowledged when its reply (with the trigger's id) arrived."""

    def __init__(self, home: Path):
        self.home, self.stop = home, threading.Event()
        self.acked: dict[str, int] = {}      # token -> trigger id
        self.cut_off = 0                     # requests with no daemon to answer them (never acknowledged)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client, n = None, 0
        while not self.stop.is_set():
            token, n = f"t{n}", n + 1
            try:
                client = client or control.Client(self.home, timeout=10)
                self.acked[token] = client.call("trigger", job="work", args=[token])
            except (AiosError, OSError, ValueError):
                self.cut_off += 1
                client = client.close() if client else None
            self.stop.wait(0.02)
        if client:
            client.close()


def check_triggers(home: Path, acked: dict[str, int]) -> dict:
    """Wait for every acknowledged trigger; count what ran and what was recorded."""
    with control.Client(home, timeout=LIVENESS * 3) as client:
        for trigger_id in acked.values():
            client.call("wait", trigger=trigger_id)
        runs = client.call("history", job="work", limit=10_000)
    ran = Counter((home / "ran.txt").read_text().split()) if (home / "ran.txt").exists() else Counter()
    done = Counter(r["trigger_id"] for r in runs if r["ended"] and r["outcome"] not in ("lost", "stopped"))
    return {"acknowledged": len(acked), "lost": sum(1 for token in acked if ran[token] == 0),
            "ran_twice": sum(1 for token in acked if ran[token] > 1),
            "recorded_not_once": sum(1 for tid in acked.values() if done[tid] != 1)}


# ---------------------------------------------------------------- the report

def verdict(f: dict) -> str:
    problems = [f"{f['lost']} lost"] * bool(f["lost"]) + [f"{f['recorded_not_once']} recorded other than once"] * bool(
        f["recorded_not_once"]) + [f"{n} had {c} copies at once" for n, c in f["peaks"].items() if c > 1]
    return "OK" if not problems else "FAILED: " + ", ".join(problems)


def report(f: dict, rounds: int, seed: int) -> str:
    def ms(values: list) -> str:
        return f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms" if values else "-"

    return "\n".join([
        f"restart resilience: {rounds} rounds (seed {seed}): {len(f['job_ms'])} job kills, "
        f"{len(f['daemon_ms'])} daemon kills (kill -9)",
        f"  triggers acknowledged: {f['acknowledged']}; lost: {f['lost']}; ran more than once: {f['ran_twice']}; "
        f"recorded as done other than once: {f['recorded_not_once']} (requests refused or cut off, never "
        f"acknowledged, while no daemon answered: {f['cut_off']})",
        "  always jobs, most copies alive at once: " + ", ".join(f"{n} {c}" for n, c in f["peaks"].items()),
        f"  job kill -9 -> its new process running: {ms(f['job_ms'])}",
        f"  daemon kill -9 -> a new daemon ready with its always jobs running: {ms(f['daemon_ms'])}",
        f"verdict: {verdict(f)}",
    ])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
