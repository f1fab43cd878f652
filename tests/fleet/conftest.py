"""Fleets of real daemons on one machine, sharing a real PostgreSQL (tests/pg.py): each
device its own home, DEVICE_ID and DEVICE_TAGS, all on one schema (AIOS_DB). A job's
copies are counted from /proc by a sampler thread every few ms, across devices."""
from __future__ import annotations

import os
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests import pg

from ..integration.conftest import DaemonProcess, LIVENESS, pid_alive, wait_until

TTL = 2.0      # seconds: the shortest lease a fleet may use, so failovers are quick to test


class Fleet:
    def __init__(self, root: Path, url: str):
        self.root, self.url = root, url
        self.daemons: dict[str, DaemonProcess] = {}

    def publish(self, toml: str) -> None:
        """The fleet's jobs, as `aios apply` on any device would publish them."""
        import tomllib

        from aios.store import open_store

        store = open_store(self.url, "test")
        store.publish_jobs(tomllib.loads(textwrap.dedent(toml))["jobs"], "test")
        store.close()

    def device(self, name: str, tags: str = "", extra_toml: str = "") -> DaemonProcess:
        home = self.root / name
        (home / "Programs").mkdir(parents=True, exist_ok=True)
        (home / "aios.toml").write_text(f'[store]\nlease_ttl = "{TTL:g}s"\n\n' + textwrap.dedent(extra_toml))
        daemon = DaemonProcess(home, env={"AIOS_DB": self.url, "DEVICE_ID": name, "DEVICE_TAGS": tags})
        daemon.wait_ready()
        self.daemons[name] = daemon
        return daemon


@pytest.fixture
def fleet(pg_url, tmp_path):
    made = Fleet(tmp_path, pg_url)
    yield made
    for daemon in made.daemons.values():
        if daemon.proc.poll() is None:
            os.kill(daemon.pid, 18)     # SIGCONT: a stopped daemon cannot be terminated
            daemon.kill()
    for pid in processes_under(tmp_path):   # copies and fences the daemons left
        try:
            os.killpg(pid, 9)
        except (ProcessLookupError, PermissionError):
            pass


def processes_under(root: Path) -> list[int]:
    """Group leaders of job copies and fences of the homes under `root`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if (f"AIOS_HOME={root}".encode() in env
                or (b"aios.supervisor.fence" in cmdline and str(root).encode() in cmdline)):
            found.append(int(entry))
    return found


def copies(job: str, root: Path) -> list[tuple[int, str]]:
    """(pid, device) of every live process-group leader of `job` under `root`'s homes."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
        if (env.get(b"AIOS_JOB") == job.encode() and env.get(b"AIOS_HOME", b"").startswith(str(root).encode())
                and fields[0] not in ("Z", "X") and int(fields[2]) == int(entry)):
            found.append((int(entry), env[b"AIOS_DEVICE_ID"].decode()))
    return found


class Sampler:
    """Counts a job's live copies every `every` seconds in a thread: the most ever seen at once."""

    def __init__(self, job: str, root: Path, every: float = 0.005):
        self.job, self.root, self.every = job, root, every
        self.most, self.samples, self.seen = 0, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(LIVENESS)

    def _run(self) -> None:
        while not self._stop.is_set():
            found = copies(self.job, self.root)
            self.samples += 1
            if len(found) > self.most:
                self.most, self.seen = len(found), found
            time.sleep(self.every)


__all__ = ["Fleet", "Sampler", "TTL", "copies", "pid_alive", "wait_until"]
