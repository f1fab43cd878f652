"""The systems under test: process managers (AIOS, supervisord, circus, pm2) and the
interpreter floors they are compared with.

A process manager is a `System`: it writes its own configuration for a list of `Job`s
into a fresh work folder (`prepare`), starts its daemon as a user would (`launch`), says
when its control endpoint answers (`is_ready`), names the processes it manages
(`managed_pids`), gives the argv of its own CLI for a few actions (`cli`) and stops as a
user would stop it (`stop`). Everything else (timing, polling, memory, CPU) is done by
the scenarios from the kernel's view, the same way for every system. A peer implements
`argv`, `write_config`, `readiness` and `cli`, and overrides `daemon_pid` if the launched
command is not the daemon itself (pm2).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from .. import measure

SLEEP = (shutil.which("sleep") or "/bin/sleep", "100000")
TRUE = (shutil.which("true") or "/bin/true",)
SPAWNED = Path(__file__).resolve().parent.parent / "probes" / "spawned.py"
STOP_GRACE = 10.0                  # cleanup: seconds to wait after SIGTERM before SIGKILL


class Job(NamedTuple):
    """One managed program: kept running ("always"), started every `every` seconds
    ("interval"), or run once per trigger ("trigger"; AIOS only)."""

    name: str
    argv: tuple[str, ...] = SLEEP
    every: float | None = None
    kind: str = "always"


def python_job(name: str, marker: Path) -> Job:
    """An always job running a Python program (the real interpreter) that creates
    `marker` once its own code runs, then sleeps."""
    return Job(name, (sys.executable, str(SPAWNED), str(marker)))


def sleepers(n: int) -> list[Job]:
    """n always jobs, each running `sleep 100000` (it honours SIGTERM)."""
    return [Job(f"sleep{i:03d}") for i in range(n)]


class System:
    """A process manager under test. Subclasses set the class attributes and implement
    `argv`, `write_config`, `readiness` and `cli`."""

    name = "?"
    kind = "manager"
    interpreter = "python"                   # the floor its start-up and memory are compared with
    features: frozenset[str] = frozenset({"always", "cli"})   # what scenarios it can take part in
    variant_of: str | None = None            # another configuration of that system: not a peer of it
    stop_how = "SIGTERM to the daemon"

    def __init__(self, env: dict[str, str], scratch: Path):
        self.env, self.scratch = env, scratch
        self.proc: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.children: measure.Children | None = None
        self._execd: set = set()              # pids of children seen running their own program
        self._seen: set = set()              # identities of every managed process seen
        self._daemon_cmdline: bytes | None = None
        self._log_fd: int | None = None
        self._log = b""
        self._ready = None

    # ---- to implement
    def argv(self) -> list[str]:
        raise NotImplementedError

    def write_config(self, jobs: Sequence[Job] | None) -> None:
        """Write the configuration for `jobs` into self.workdir; None: the system's own
        default configuration (only with the "default_config" feature)."""
        raise NotImplementedError

    def readiness(self):
        """A fresh check (probe.Asker or probe.Probe) that the control endpoint answers a
        request; made right before the launch, untimed."""
        raise NotImplementedError

    def cli(self, action: str, job: str | None = None) -> list[str]:
        """argv of the system's own CLI for `action`: "help", "status" or "restart" (job)."""
        raise NotImplementedError

    def process_env(self) -> dict[str, str]:
        return dict(self.env)

    def cli_cwd(self) -> str:
        return str(self.workdir)

    def describe(self) -> str:
        return self.name

    def unavailable(self) -> str | None:
        """Why this system cannot be measured here (e.g. not installed), or None."""
        return None

    def self_reported_ready_ms(self) -> float | None:
        return None

    def before_launch(self) -> None:
        """Untimed preparation right before the launch: a fresh readiness check."""
        self._close_ready()
        self._ready = self.readiness()

    def is_ready(self) -> bool:
        """The daemon's control endpoint has answered a request (never blocks)."""
        return self._ready is not None and self._ready.answered()

    def _close_ready(self) -> None:
        if self._ready is not None:
            self._ready.close()
            self._ready = None

    # ---- life cycle
    def prepare(self, jobs: Sequence[Job] | None) -> None:
        """A fresh work folder with the configuration; not part of any timing."""
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.scratch))
        self.write_config(jobs)
        self.children = measure.Children()

    def launch(self) -> None:
        """Start the daemon as a user would; its stdout and stderr go to a file."""
        self._close_log()
        log_path = self.workdir / "daemon.out"
        out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            self.proc = subprocess.Popen(self.argv(), env=self.process_env(), cwd=str(self.workdir),
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        finally:
            os.close(out)
        self._log_fd = os.open(log_path, os.O_RDONLY | os.O_CLOEXEC)
        self._daemon_cmdline = measure.cmdline(self.proc.pid)   # Popen returns once it has exec'd
        self._execd = set()

    def run_cli(self, action: str, job: str | None = None) -> subprocess.Popen:
        """Start the system's CLI for `action` (output discarded); the caller times it."""
        return subprocess.Popen(self.cli(action, job), env=self.process_env(), cwd=self.cli_cwd(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def daemon_pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def managed_pids(self) -> list[int]:
        """Managed processes now running their own program: children of the daemon that
        have exec'd (a forked child that has not exec'd yet still shows the daemon's
        command line)."""
        daemon = self.daemon_pid
        if daemon is None:
            return []
        running = [pid for pid in self.children.of(daemon) if self._has_execd(pid)]
        self._execd = set(running)
        return running

    def _has_execd(self, pid: int) -> bool:
        if pid in self._execd:
            return True
        line = measure.cmdline(pid)
        if not line or line == self._daemon_cmdline:
            return False
        ident = measure.identity(pid)
        if ident is not None:
            self._seen.add(ident)
        return True

    def stop(self) -> None:
        """Ask the daemon to stop everything, as a user would."""
        self.proc.send_signal(signal.SIGTERM)

    def exited(self) -> bool:
        """The daemon has exited (and is reaped, so its pid is gone)."""
        return self.proc is not None and self.proc.poll() is not None

    def died(self) -> str | None:
        """Why the daemon is no longer running, if it is not (for aborting waits)."""
        if not self.exited():
            return None
        return f"{self.name} daemon exited with status {self.proc.returncode}: {self.log_tail()}"

    def leftovers(self) -> list[measure.Ident]:
        """Managed processes seen during this launch that are still running."""
        return [ident for ident in self._seen if measure.alive(ident)]

    # ---- the daemon's output
    def log_text(self) -> bytes:
        """Everything the daemon wrote to stdout/stderr so far (read incrementally)."""
        if self._log_fd is not None:
            while True:
                chunk = os.read(self._log_fd, 65536)
                if not chunk:
                    break
                self._log += chunk
        return self._log

    def log_tail(self, lines: int = 3) -> str:
        tail = self.log_text().decode(errors="replace").strip().splitlines()[-lines:]
        return " | ".join(tail) or "(no output)"

    def _close_log(self) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
        self._log_fd, self._log = None, b""

    # ---- cleanup
    def cleanup(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL), kill every managed process left,
        remove the work folder. Safe to call in any state."""
        self._close_ready()
        self._note_all_children()
        self.stop_daemon()
        for ident in self.leftovers():
            _kill_group(ident)
        self._close_log()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.proc, self.workdir, self.children = None, None, None
        self._execd, self._seen, self._daemon_cmdline = set(), set(), None

    def _note_all_children(self) -> None:
        """Every child of the daemon, managed or a helper of its own, is killed at cleanup
        if it outlives the daemon."""
        daemon = self.daemon_pid if self.children is not None else None
        if daemon is not None and self.daemon_alive():
            idents = (measure.identity(pid) for pid in self.children.of(daemon))
            self._seen.update(ident for ident in idents if ident is not None)

    def daemon_alive(self) -> bool:
        return not self.exited()

    def stop_daemon(self) -> None:
        """Cleanup's stop: SIGTERM, then SIGKILL after STOP_GRACE seconds."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _kill_group(ident: measure.Ident) -> None:
    for kill, target in ((os.killpg, ident.pid), (os.kill, ident.pid)):
        try:
            if measure.alive(ident):
                kill(target, signal.SIGKILL)
        except OSError:
            pass


def process_env(pycache: Path | None) -> tuple[dict[str, str], str]:
    """The environment of every measured Python process, and a sentence saying what it
    means for bytecode. With `pycache`, .pyc files are written to and read from that
    private folder (PYTHONPYCACHEPREFIX), as a normal install would use its __pycache__,
    without writing into the repository; without it the caller's environment is kept."""
    env = dict(os.environ)
    inherited = "PYTHONDONTWRITEBYTECODE=1 set" if env.get("PYTHONDONTWRITEBYTECODE") else "bytecode writes allowed"
    if pycache is None:
        return env, f"inherited environment ({inherited})"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env, (f".pyc files cached in a private PYTHONPYCACHEPREFIX, filled by an untimed warm-up run "
                 f"(caller's environment: {inherited}; PYTHONDONTWRITEBYTECODE removed for measured processes)")
