#!/usr/bin/env python3
"""usage: python3 comprehensive_performance_test.py [BENCH OPTIONS]

The original's comprehensive performance test: the full benchmark (python3 -m bench),
every scenario, 5 rounds, AIOS side by side with supervisord, circus and pm2. The peers
are installed on first use into bench/.peers (a venv) and bench/.node (npm), never
globally; one that cannot be installed stays in the table with the reason. Writes the
raw results to bench/results/ and, a full run, the table to BENCHMARKS.md. Takes
minutes.

Options are passed to python3 -m bench, e.g. --rounds 10, --only cold_start shutdown_100
(python3 -m bench --help lists them).
"""
import sys
from pathlib import Path


def main(argv: list) -> int:
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(__doc__)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench.__main__ import main as bench

    return bench(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
