#!/usr/bin/env python3
"""usage: python3 quick_performance_test.py [BENCH OPTIONS]

The original's quick performance test, on the benchmark harness (python3 -m bench --quick):
cold start, restart through the CLI, crash recovery, shutdown and the daemon's memory,
one round, in about ten seconds. Measured beside supervisord, circus and pm2 where an
earlier full run installed them (python3 comprehensive_performance_test.py does), else
AIOS alone; nothing is installed. Prints the table with its ratios: x floor (the time
over a bare interpreter's start) and AIOS / best peer (below 1: AIOS is ahead).

Options are passed to python3 -m bench, e.g. --only restart, --rounds 3, --out DIR
(python3 -m bench --help lists them).
"""
import sys
from pathlib import Path

QUICK_SET = ["cold_start_1", "restart", "crash_recovery", "shutdown_5", "rss_5"]


def main(argv: list) -> int:
    if "-h" in argv or "--help" in argv:
        sys.stdout.write(__doc__)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench import peers
    from bench.__main__ import main as bench

    found = peers.installed()
    sys.stderr.write("quick_performance_test: " + (
        "beside " + ", ".join(f"{name} {install.version}" for name, install in found.items()) if found else
        "AIOS alone: no peer installed yet (python3 comprehensive_performance_test.py installs them)") + "\n")
    chosen = [] if "--only" in argv else ["--only", *QUICK_SET]
    return bench(["--quick", "--installed-peers", *chosen, *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
