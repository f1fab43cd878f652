#!/usr/bin/env python3
"""The original's restart test: `python3 test_restarts.py [--rounds N] [--seed S] [--keep]`.

kill -9 rounds of jobs and of the daemon under a stream of triggers, then the lost and
duplicate counts (bench/restarts.py; --help says more). Not a pytest module: the test
suite runs it as a user would (tests/test_shims.py).
"""
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench.restarts import main

    sys.exit(main(sys.argv[1:]))
