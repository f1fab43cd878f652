"""python3 -m bench.bytecode [--rounds N]

A cold start of AIOS (`python3 simple_orchestrator.py`, 1 always job: launch -> control
socket answers) with PYTHONDONTWRITEBYTECODE=1, as in many containers, three ways
alternating A B C in each round:

    kept        AIOS keeps its .pyc under the user's cache (aios.keep_bytecode; here a
                scratch XDG_CACHE_HOME, filled by an untimed start)
    compiled    as before keep_bytecode (AIOS_NO_BYTECODE_CACHE=1): AIOS's own modules
                compiled at every start (the standard library's .pyc are read as usual)
    written     bytecode written as usual (PYTHONDONTWRITEBYTECODE unset; a scratch
                PYTHONPYCACHEPREFIX, filled by an untimed start): the reference

Prints the median and min-max of each and their ratios to `written`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from . import scenarios
from .systems import sleepers
from .systems.aios import Aios


def variants(scratch: Path) -> dict[str, Aios]:
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    off = {**base, "PYTHONDONTWRITEBYTECODE": "1"}
    return {
        "kept": Aios({**off, "XDG_CACHE_HOME": str(scratch / "cache")}, scratch),
        "compiled": Aios({**off, "AIOS_NO_BYTECODE_CACHE": "1"}, scratch),
        "written": Aios({**base, "PYTHONPYCACHEPREFIX": str(scratch / "pycache")}, scratch),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python3 -m bench.bytecode")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="aios-bytecode-"))
    try:
        systems = variants(scratch)
        for system in systems.values():         # untimed: the caches fill
            scenarios.cold_start(system, sleepers(1), 1, scenarios.FULL)
        ready = {name: [] for name in systems}
        for _ in range(args.rounds):
            for name, system in systems.items():
                ready[name] += scenarios.cold_start(system, sleepers(1), 1, scenarios.FULL)["ready_ms"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = statistics.median(ready["written"])
    print(f"cold start, launch -> ping, {args.rounds} rounds, PYTHONDONTWRITEBYTECODE=1 unless `written`; "
          f"Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}")
    for name, values in ready.items():
        median = statistics.median(values)
        print(f"  {name:9s} median {median:6.1f} ms  (min {min(values):.1f}, max {max(values):.1f})  "
              f"x{median / base:.2f} of written")


if __name__ == "__main__":
    main(sys.argv[1:])
