"""Chaos tests: real daemons killed, starved and fed misbehaving jobs. Marked `chaos`
(deselect with `-m "not chaos"`); each prints its figures (see RELIABILITY.md).

The daemon helpers (DaemonProcess, write_home, wait_until, ...) and the `home` fixture,
which kills whatever a failed test left behind, come from tests/integration/conftest.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import DaemonProcess, home, processes_with_home  # noqa: F401  (home: the fixture)

SAMPLER = Path(__file__).with_name("sampler.py")


def figures(title: str, **values) -> None:
    """Print a test's figures on one line each (shown with `pytest -s` or `-rP`)."""
    print(f"\n[chaos figures] {title}")
    for key, value in values.items():
        print(f"  {key}: {value}")


class Sampler:
    """tests/chaos/sampler.py in its own process: copies of each job seen in /proc."""

    def __init__(self, where: Path, jobs: list[str], out: Path, interval: float = 0.005):
        self.out = out
        self.proc = subprocess.Popen([sys.executable, str(SAMPLER), str(where), str(out), str(interval), *jobs])

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        return json.loads(self.out.read_text())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


@pytest.fixture
def tiny_fs(tmp_path):
    """A 2 MiB tmpfs mounted for the test (root only; in CI it must run)."""
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("the tmpfs test must run in CI, which runs as root; this run is not root")
        pytest.skip("needs root to mount a small tmpfs (runs in CI, which is root)")
    where = tmp_path / "tiny"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        for daemon in DaemonProcess.started:
            if daemon.proc.poll() is None and str(daemon.home).startswith(str(where)):
                daemon.kill()
        for pid in processes_with_home(where / "home"):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for _ in range(50):
            if subprocess.run(["umount", str(where)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(where)], check=False)
