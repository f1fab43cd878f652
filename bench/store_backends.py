"""The store, measured alone: acknowledged triggers per second (one client, and three at
once, each its own process and device) and claims per second, on SQLite and on
PostgreSQL, side by side in one run (A B A B within each round; BENCH.md's rules).

    python3 -m bench.store_backends [--quick] [--rounds N] [--pg URL] [--out DIR]

A trigger is acknowledged when add_trigger returns (committed). A claim is
claim_trigger returning a trigger. PostgreSQL is --pg (an admin URL: the bench makes
and drops its own schemas there), else $AIOS_BENCH_PG_DSN, else a server that the bench
starts with pgserver in a temporary folder (a Unix socket, fsync on, as installed).
SQLite is a fresh file per measurement in the temporary folder (WAL; an acknowledgement
commits with synchronous = FULL, fsynced as PostgreSQL's commits are). Every client is a new Python process;
the time is from the earliest client's first call to the latest client's last, on
perf_counter (CLOCK_MONOTONIC, one clock for every process).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from . import ROOT
from .measure import together
from .pg import Postgres

CLIENT = """
import json, sys, time
from aios.store import StoreError, open_store
url, device, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = open_store(url, device)
print("ready", flush=True)
sys.stdin.readline()
done = retries = 0
t0 = time.perf_counter()
while done < n:
    try:
        if mode == "add":
            store.add_trigger("bench", [done], now=1.0)
        elif store.claim_trigger("bench", 1.0) is None:
            break
        done += 1
    except StoreError:
        retries += 1   # SQLite: another writer held the lock past busy_timeout; the daemon retries too
t1 = time.perf_counter()
store.close()
print(json.dumps({"t0": t0, "t1": t1, "done": done, "retries": retries}))
"""

ROWS = (("add", 1), ("add", 3), ("claim", 1), ("claim", 3))


def run_clients(url: str, mode: str, clients: int, per_client: int) -> dict:
    """`clients` processes doing `mode` at once; their rate in operations per second."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argvs = [[sys.executable, "-c", CLIENT, url, f"bench{n}", mode, str(per_client)] for n in range(clients)]
    results = together(argvs, env, str(ROOT), 600)
    done = sum(r["done"] for r in results)
    elapsed = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    return {"per_s": done / elapsed, "done": done, "retries": sum(r["retries"] for r in results)}


def fill(url: str, count: int) -> None:
    from aios.store import open_store

    store = open_store(url, "filler")
    with store.batch(durable=True):
        for n in range(count):
            store.add_trigger("bench", [n], now=1.0)
    store.close()


def measure(backend: str, fresh, mode: str, clients: int, per_client: int) -> dict:
    url = fresh()
    from aios.store import open_store

    open_store(url, "setup").close()   # create the schema outside the measured time
    if mode == "claim":
        fill(url, clients * per_client)
    return run_clients(url, mode, clients, per_client)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.store_backends", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 50 operations per client")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 1 with --quick)")
    parser.add_argument("--pg", help="admin URL of a PostgreSQL server (default: start one)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    rounds, per_client = args.rounds or (1 if args.quick else 5), 50 if args.quick else 2000
    postgres, folder = Postgres(args.pg), tempfile.mkdtemp(prefix="aios-bench-backends-")
    files = iter(range(1_000_000))
    backends = {"sqlite": lambda: os.path.join(folder, f"state{next(files)}.db"), "postgres": postgres.fresh}
    samples = {f"{mode}_{clients}": {name: [] for name in backends} for mode, clients in ROWS}
    try:
        for _ in range(rounds):
            for mode, clients in ROWS:
                for name, fresh in backends.items():   # A B, then the next row
                    samples[f"{mode}_{clients}"][name].append(measure(name, fresh, mode, clients, per_client))
    finally:
        postgres.close()
    print(report(samples, rounds, per_client))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"store-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"rounds": rounds, "per_client": per_client, "python": sys.version,
                               "samples": samples}, indent=1))
    print(f"\nraw results: {out}")
    return 0


LABELS = {"add_1": "triggers acknowledged/s, 1 client", "add_3": "triggers acknowledged/s, 3 clients",
          "claim_1": "claims/s, 1 client", "claim_3": "claims/s, 3 clients"}


def report(samples: dict, rounds: int, per_client: int) -> str:
    lines = [f"{rounds} round(s), {per_client} operations per client; median (min-max)", "",
             "| row | SQLite | PostgreSQL | PostgreSQL / SQLite |", "| --- | --- | --- | --- |"]
    for key, by_backend in samples.items():
        cells, medians = [], []
        for name in ("sqlite", "postgres"):
            rates = [s["per_s"] for s in by_backend[name]]
            medians.append(statistics.median(rates))
            retries = sum(s["retries"] for s in by_backend[name])
            cells.append(f"{medians[-1]:,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"
                         + (f", {retries} lock retries" if retries else ""))
        lines.append(f"| {LABELS[key]} | {cells[0]} | {cells[1]} | {medians[1] / medians[0]:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
