"""Real daemons in temp homes: in-process engines driven through their own loop, and
`simple_orchestrator.py` subprocesses. Tests wait on conditions with generous timeouts
(liveness only); they never assert on speed."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIVENESS = 30.0


def write_home(home: Path, toml: str, programs: dict | None = None) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "aios.toml").write_text(textwrap.dedent(toml))
    (home / "Programs").mkdir(exist_ok=True)
    for name, source in (programs or {}).items():
        (home / "Programs" / name).write_text(textwrap.dedent(source))
    return home


def wait_until(predicate, timeout: float = LIVENESS, what: str = "condition"):
    """Poll `predicate` (for checks from outside the daemon) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def drive(engine, predicate, timeout: float = LIVENESS, what: str = "condition"):
    """Turn the engine's own loop until `predicate()` holds (the engine runs in this thread)."""
    expired = []
    timer = engine.loop.call_later(timeout, expired.append, True)
    engine.loop.run(until=lambda: bool(predicate()) or bool(expired) or engine.stopped)
    timer.cancel()
    value = predicate()
    if not value:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    return value


def pause(engine, seconds: float) -> None:
    """Let the engine run on its own for `seconds` (to show something does NOT happen)."""
    done = []
    engine.loop.call_later(seconds, done.append, True)
    engine.loop.run(until=lambda: bool(done))


@contextmanager
def running_engine(home: Path, force: bool = False):
    from aios.engine.daemon import Daemon

    daemon = Daemon.open(home, force=force)
    daemon.start()
    engine = daemon.engine
    try:
        yield engine
    finally:
        engine.shutdown("test over")
        drive(engine, lambda: engine.stopped, what="engine shutdown")
        daemon.finish()


def runs(home: Path, job: str | None = None) -> list[dict]:
    """Rows of the runs table, oldest first, as dicts."""
    with sqlite3.connect(home / "orchestrator.db") as db:
        db.row_factory = sqlite3.Row
        sql = "SELECT * FROM runs" + (" WHERE job = ?" if job else "") + " ORDER BY id"
        return [dict(r) for r in db.execute(sql, (job,) if job else ())]


def events(home: Path, name: str | None = None) -> list[dict]:
    with sqlite3.connect(home / "orchestrator.db") as db:
        db.row_factory = sqlite3.Row
        sql = "SELECT * FROM events" + (" WHERE name = ?" if name else "") + " ORDER BY id"
        return [dict(r) for r in db.execute(sql, (name,) if name else ())]


def insert_trigger(home: Path, job: str, args: str | None = None, kwargs: str | None = None) -> int:
    """What another program does: a plain row in the triggers table."""
    with sqlite3.connect(home / "orchestrator.db", timeout=10) as db:
        cur = db.execute("INSERT INTO triggers (job, args, kwargs) VALUES (?, ?, ?)", (job, args, kwargs))
        return cur.lastrowid


def pid_alive(pid: int) -> bool:
    """True if the pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[tuple[int, str]]:
    """(child pid, state letter) for every process whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                found.append((int(entry), fields[0]))
    return found


def processes_with_home(home: Path) -> list[int]:
    """Pids of live job processes of `home` (and their descendants): their environment
    holds AIOS_HOME=home and an AIOS_JOB, which the daemon itself does not have."""
    marker = f"AIOS_HOME={home}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read().split(b"\0")
                if marker in env and any(v.startswith(b"AIOS_JOB=") for v in env) and pid_alive(int(entry)):
                    found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


class DaemonProcess:
    """`python3 simple_orchestrator.py` with AIOS_HOME=home, as a user starts it. Every
    one started is killed at the end of its test if it still runs (see `home`)."""

    started: list = []

    def __init__(self, home: Path, *args: str, env: dict | None = None, stderr_path: Path | None = None,
                 nofile: int | None = None):
        DaemonProcess.started.append(self)
        self.home = home
        self.stderr_path = stderr_path or home / "daemon.stderr"
        self.offset = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
        full_env = {**os.environ, "AIOS_HOME": str(home), **(env or {})}
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "simple_orchestrator.py"), *args],
                                         env=full_env, stdout=subprocess.DEVNULL, stderr=err, cwd=home,
                                         preexec_fn=None if nofile is None else lambda: _limit_nofile(nofile))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        """What this daemon wrote to stderr (the file is shared by daemons of one home)."""
        with open(self.stderr_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode(errors="replace")

    def wait_ready(self) -> None:
        wait_until(lambda: "daemon_started" in self.output() or self.proc.poll() is not None,
                   what="daemon_started")
        assert self.proc.poll() is None, f"daemon exited early:\n{self.output()}"

    def terminate(self, timeout: float = LIVENESS) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(LIVENESS)


def _limit_nofile(limit: int) -> None:
    """In the child before exec: soft and hard RLIMIT_NOFILE, so the daemon cannot raise it."""
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    yield home
    for daemon in DaemonProcess.started:  # never leave a daemon or a job of a failed test behind
        if daemon.proc.poll() is None:
            daemon.kill()
    DaemonProcess.started.clear()
    for pid in processes_with_home(home):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
