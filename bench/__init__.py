"""Side-by-side benchmarks of AIOS and the process managers a user would pick instead,
measured as whole operations as the user waits for them, from the kernel's view,
alternating systems A B A B within each round (each figure is compared only with figures
of the same run).

    python3 -m bench [--quick] [--rounds N] [--only SCENARIO ...] [--no-peers] [--out DIR]
    python3 -m bench --only fleet --no-peers [--pg URL]      the fleet rows (PostgreSQL)

Layout: `measure` (kernel-based helpers), `peers` (installs supervisord and circus into
bench/.peers, pm2 into bench/.node), `systems/` (one module per system under test, the
interpreter floors, and `probe`: readiness checks), `probes/` (programs run by the peers'
own interpreters: readiness probes, the spawn row's Python program), `scenarios` (one
function per scenario every system takes part in), `aios_only` (scheduling, triggers and
the control plane), `fleet` (several daemons on one PostgreSQL: triggers fleet-wide, a
trigger for another device, failover, idle CPU), `pg` (the PostgreSQL server those and
AIOS on PostgreSQL use), `plan` (the rows of the table), `report` (JSON and the Markdown
table), `__main__` (the command line and the round loop), `profiling` (where AIOS's
time and memory go: `python3 -m bench.profiling`, see PROFILE.md), `store` (the store's
own figures: acknowledged triggers per second, pruning steps: `python3 -m bench.store`),
`store_backends` (SQLite and PostgreSQL side by side: acknowledgements and claims per
second, one client and three: `python3 -m bench.store_backends`), `python_jobs` (program
jobs through the zygote against spawned ones: rows of the table), `bytecode` (a cold
start with PYTHONDONTWRITEBYTECODE=1, with and without AIOS's bytecode cache:
`python3 -m bench.bytecode`).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
