"""Interpreter floors: the cost of starting the bare interpreter a process manager runs
on (`python -c pass` today; `node -e 0` when pm2 joins). Start-up and memory rows of a
manager are quoted as a ratio to its interpreter's floor."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict, List, Optional

from .. import measure


class Interpreter:
    """An interpreter whose empty program is timed from spawn to exit."""

    kind = "interpreter"
    features = frozenset({"floor"})

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], no_site: Optional[List[str]] = None):
        self.name, self.argv, self.env, self.no_site = name, argv, env, no_site

    def unavailable(self) -> Optional[str]:
        return None

    def describe(self) -> str:
        return " ".join(self.argv)

    def run_once(self, argv: List[str]) -> Dict[str, float]:
        """Wall time from spawn to exit, and the peak RSS the kernel reports for it."""
        t0 = measure.now()
        proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = measure.ms_since(t0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise measure.MeasureError(f"{' '.join(argv)} exited with status {proc.returncode}")
        return {"wall_ms": wall, "maxrss_mib": usage.ru_maxrss * 1024 / measure.MIB}  # ru_maxrss is in kB


def python(env: Dict[str, str]) -> Interpreter:
    """The real interpreter running this benchmark (sys.executable, never a PATH shim),
    with `site` imported as for `python3 simple_orchestrator.py`; `-S` shown beside it."""
    exe = sys.executable
    return Interpreter("python", [exe, "-c", "pass"], env, no_site=[exe, "-S", "-c", "pass"])
