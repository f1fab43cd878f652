"""One live daemon per test module, fed bad input while it runs other jobs: after every
case it must still answer and its always jobs must still be the same processes."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from aios import control
from tests.integration.conftest import DaemonProcess, pid_alive, processes_with_home, wait_until, write_home

BASE = """
[jobs.svc]
type = "always"
command = ["sleep", "100000"]

[jobs.svc2]
type = "always"
program = "keep.py:main"

[jobs.work]
type = "trigger"
command = ["sh", "-c", 'echo "$1" >> "$AIOS_HOME/work.txt"', "work"]

[jobs.prog]
type = "trigger"
program = "echo.py:main"
"""
PROGRAMS = {
    "keep.py": """
        import time

        def main():
            while True:
                time.sleep(1)
    """,
    "echo.py": """
        import json, os

        def main(*args, **kwargs):
            with open(os.path.join(os.environ["AIOS_HOME"], "echo.jsonl"), "a") as f:
                f.write(json.dumps({"args": list(args), "kwargs": kwargs}) + "\\n")
    """,
    "ok.py": """
        def main():
            pass
    """,
}
ALWAYS = ("svc", "svc2")


class Live:
    """A daemon in `home` running BASE; `unharmed()` checks it survived a case."""

    def __init__(self, home: Path):
        self.home = home
        write_home(home, BASE, PROGRAMS)
        os.symlink("/etc/passwd", home / "Programs" / "escape.py")
        os.makedirs(home / "outside", exist_ok=True)
        (home / "outside" / "evil.py").write_text("def main():\n    pass\n")
        os.symlink(home / "outside", home / "Programs" / "linked")
        self.daemon = DaemonProcess(home)
        self.daemon.wait_ready()
        self.pids = wait_until(lambda: self._always_pids(), what="the always jobs running")
        self.cases = 0

    def _always_pids(self) -> dict | None:
        jobs = {j["name"]: j for j in control.call(self.home, "status")}
        pids = {name: jobs[name]["pid"] for name in ALWAYS if jobs[name]["status"] == "running"}
        return pids if len(pids) == len(ALWAYS) else None

    def unharmed(self) -> None:
        """The daemon is up and answers, and its always jobs are the same processes."""
        self.cases += 1
        assert self.daemon.proc.poll() is None, f"the daemon died:\n{self.daemon.output()[-3000:]}"
        assert control.call(self.home, "ping")["pid"] == self.daemon.pid
        assert self._always_pids() == self.pids
        assert all(pid_alive(pid) for pid in self.pids.values())
        assert "internal error" not in self.daemon.output(), self.daemon.output()[-3000:]

    def close(self) -> None:
        if self.daemon.proc.poll() is None:
            assert self.daemon.terminate() == 0
        for pid in processes_with_home(self.home):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    daemon = Live(tmp_path_factory.mktemp("bad_input") / "home")
    yield daemon
    daemon.close()
