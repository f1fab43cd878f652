"""Interpreter floors: the cost of starting the bare interpreter a process manager runs
on (`python -c pass` for AIOS, supervisord and circus; `node -e 0` for pm2). Start-up
and memory rows of a manager are quoted as a ratio to its interpreter's floor."""
from __future__ import annotations

import subprocess
import sys

from .. import measure

PY_IDLE = "import os; os.write(1, b'.'); os.read(0, 1)"   # started, then blocked reading stdin
NODE_IDLE = ("process.stdout.write('.'); process.stdin.on('data', () => {}); "
             "process.stdin.on('end', () => process.exit(0))")


class Interpreter:
    """An interpreter: its empty program timed from spawn to exit, and its memory
    when it has started and sits idle."""

    kind = "interpreter"
    features = frozenset({"floor"})

    def __init__(self, name: str, argv: list[str], idle_argv: list[str], env: dict[str, str],
                 no_site: list[str] | None = None):
        self.name, self.argv, self.idle_argv, self.env, self.no_site = name, argv, idle_argv, env, no_site

    def unavailable(self) -> str | None:
        return None

    def describe(self) -> str:
        return " ".join(self.argv)

    def wall_ms(self, argv: list[str]) -> float:
        """Wall time from spawn to exit."""
        t0 = measure.now()
        code = subprocess.call(argv, env=self.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = measure.ms_since(t0)
        if code != 0:
            raise measure.MeasureError(f"{' '.join(argv)} exited with status {code}")
        return elapsed

    def idle_memory_mib(self) -> dict[str, float]:
        """VmRSS and VmHWM of the interpreter once started, read like a daemon's. (Not the
        ru_maxrss of `-c pass`: Linux folds the spawning parent's RSS into a child's
        ru_maxrss at exec, so that figure is the benchmark's own size.)"""
        proc = subprocess.Popen(self.idle_argv, env=self.env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            if proc.stdout.read(1) != b".":
                raise measure.MeasureError(f"{' '.join(self.idle_argv)} did not start (status {proc.wait()})")
            return measure.memory_mib(proc.pid)
        finally:
            proc.stdin.close()
            proc.stdout.close()
            proc.wait()


def python(env: dict[str, str]) -> Interpreter:
    """The real interpreter running this benchmark (sys.executable, never a PATH shim),
    with `site` imported as for `python3 simple_orchestrator.py`; `-S` shown beside it."""
    exe = sys.executable
    return Interpreter("python", [exe, "-c", "pass"], [exe, "-c", PY_IDLE], env,
                       no_site=[exe, "-S", "-c", "pass"])


def node(env: dict[str, str], exe: str) -> Interpreter:
    """The node binary pm2 runs on (resolved, not a PATH shim)."""
    return Interpreter("node", [exe, "-e", "0"], [exe, "-e", NODE_IDLE], env)
