"""Helpers for the tests of aios.supervisor: real processes, waits on events with
generous timeouts (LIVENESS is only ever reached when something is broken)."""
from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aios import supervisor
from aios.supervisor import Proc

LIVENESS = 30.0
PY = sys.executable
REPO = str(Path(__file__).resolve().parents[1])


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "job.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    yield path, fd
    os.close(fd)


@pytest.fixture
def procs():
    """Every proc a test starts; whatever is still running is killed afterwards."""
    started: list[Proc] = []
    yield started
    for proc in started:
        supervisor.signal_group(proc, 9)
        wait_until(lambda p=proc: supervisor.reap(p) is not None)


def start(procs, argv, log, env=None, cwd=None, **options) -> Proc:
    proc = supervisor.spawn(argv, env or dict(os.environ), cwd or os.getcwd(), log[1], **options)
    procs.append(proc)
    return proc


def wait_until(condition, timeout=LIVENESS):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)


def wait_exit(proc: Proc) -> tuple:
    """Wait for the pidfd to become readable, then reap."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.pidfd, selectors.EVENT_READ)
        assert sel.select(LIVENESS), "pidfd never became readable"
    result = supervisor.reap(proc)
    assert result is not None
    return result


def log_text(log) -> str:
    return log[0].read_text()


def wait_log(log, needle: str) -> str:
    wait_until(lambda: needle in log_text(log))
    return log_text(log)


def gone(pid: int) -> bool:
    """The pid no longer runs (it may linger as a zombie of some other reaper)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return True
    return data[data.rindex(b")") + 2:][:1] in (b"Z", b"X")


def our_zombies() -> set[int]:
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] == b"Z" and int(fields[1]) == os.getpid():
                found.add(int(name))
    return found


def run_driver(source: str, *args: str, prefix: tuple = ()) -> object:
    """Run `source` in a fresh interpreter (after `prefix`, e.g. unshare or runuser) with
    the repository importable; return the JSON it prints last."""
    done = subprocess.run([*prefix, PY, "-c", source, *args], capture_output=True, text=True,
                          timeout=LIVENESS * 2, env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


NOBODY = 65534


def require_root() -> None:
    """Tests that run processes as another user: skipped only outside CI (CI runs as root)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("this test needs root, and CI runs the suite as root")
        pytest.skip("needs root to run a process as nobody (CI runs it)")


def foreign_leader(env: dict) -> tuple[subprocess.Popen, int]:
    """A process-group leader running as nobody with `env`: (its runuser, its pid)."""
    require_root()
    script = ("import os, time\nif os.getpgid(0) != os.getpid(): os.setsid()\n"
              "print(os.getpid(), flush=True)\ntime.sleep(1000)")
    runner = subprocess.Popen(["runuser", "-u", "nobody", "--", PY, "-S", "-c", script],
                              env=env, stdout=subprocess.PIPE, text=True, cwd="/")
    return runner, int(runner.stdout.readline())
