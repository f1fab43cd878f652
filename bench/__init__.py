"""Side-by-side benchmarks of AIOS and the process managers a user would pick instead,
measured as ../shared/BENCH.md says: whole operations as the user waits for them, from
the kernel's view, alternating systems A B A B within each round.

    python3 -m bench [--quick] [--rounds N] [--only SCENARIO ...] [--out DIR]

Layout: `measure` (kernel-based helpers), `systems/` (one module per system under test,
plus the interpreter floors), `scenarios` (one function per scenario), `report`
(JSON and the Markdown table), `__main__` (the command line and the round loop).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
