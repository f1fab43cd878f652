"""The store's own figures: acknowledged triggers per second, and how long pruning holds
the write lock on a large database.

    python3 -m bench.store [--quick] [--rounds N] [--triggers N] [--mb MB] [--dir DIR]

Acknowledgements: `add_trigger` called N times on a real file (each returns once its
trigger is stored), in three ways, alternating within each round: as before (WAL,
synchronous = NORMAL: not durable on power loss), as now (synchronous = FULL for each
acknowledgement: its WAL frames are synced before it returns), and grouped (100 per
`batch(durable=True)`, one sync per group: what a daemon answering many clients at once
can do). Pruning: a database of about MB megabytes of old runs, triggers and events; the
old way deletes a tenth of it in one DELETE per table, the new way the next tenth in
`prune(limit=1000)` steps; each step is how long a trigger waits at worst behind it.
Times are time.perf_counter; standard library and aios only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from aios.spec import JobState
from aios.store.sqlite import SqliteStore

from .measure import median, percentile

T0 = 1_700_000_000.0
GROUP = 100
STEP = 1000


class NormalStore(SqliteStore):
    """The store as it was: every transaction committed with synchronous = NORMAL."""

    def _transaction(self, what: str, durable: bool = False):
        return super()._transaction(what, False)


def acknowledgements(folder: str, mode: str, n: int) -> dict[str, float]:
    path = os.path.join(folder, f"{mode}.db")
    store = (NormalStore if mode == "normal" else SqliteStore)(path, "bench")
    store.save_state(JobState(job="j"))   # the file exists and holds the schema first
    latencies = []
    began = time.perf_counter()
    if mode == "grouped":
        for start in range(0, n, GROUP):
            with store.batch(durable=True):
                for i in range(start, min(n, start + GROUP)):
                    store.add_trigger("j", [i], now=T0)
    else:
        for i in range(n):
            t = time.perf_counter()
            store.add_trigger("j", [i], now=T0)
            latencies.append(time.perf_counter() - t)
    took = time.perf_counter() - began
    store.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    figures = {"per_s": n / took}
    if latencies:
        figures.update(p50_us=percentile(latencies, 50) * 1e6, p99_us=percentile(latencies, 99) * 1e6)
    return figures


def fill(store: SqliteStore, megabytes: int) -> int:
    """Old rows until the file reaches `megabytes`; returns the rows per table."""
    db, rows, chunk = store._db, 0, 20_000
    message = "exited 0 after 0.3 s; stdout and stderr in logs/job.log " * 2
    while os.path.getsize(store.path) + _wal(store.path) < megabytes * 1_000_000:
        span = range(rows, rows + chunk)
        with store.batch():
            db.executemany("INSERT INTO runs (job, device, started, ended, exit_code, outcome) "
                           "VALUES (?, 'bench', ?, ?, 0, 'ok')", ((f"job{i % 50}", T0 + i, T0 + i + 1) for i in span))
            db.executemany("INSERT INTO triggers (job, args, kwargs, created, done, finished, outcome) "
                           "VALUES (?, '[\"some argument\"]', '{}', ?, 1, ?, 'ok')",
                           ((f"job{i % 50}", T0 + i, T0 + i + 1) for i in span))
            db.executemany("INSERT INTO events (ts, device, job, name, message) VALUES (?, 'bench', ?, ?, ?)",
                           ((T0 + i + k / 2, f"job{i % 50}", "job_exited", message) for i in span for k in (0, 1)))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows += chunk
    return rows


def pruning(folder: str, megabytes: int) -> dict[str, float]:
    store = SqliteStore(os.path.join(folder, "large.db"), "bench")
    rows = fill(store, megabytes)
    size = os.path.getsize(store.path) / 1e6
    tenth, second = T0 + rows / 10, T0 + 2 * rows / 10
    began = time.perf_counter()
    with store.batch():   # the old way: each table's old rows in one DELETE
        for sql in ("DELETE FROM runs WHERE ended IS NOT NULL AND ended < ?",
                    "DELETE FROM triggers WHERE done <> 0 AND finished < ?", "DELETE FROM events WHERE ts < ?"):
            store._db.execute(sql, (tenth,))
    one_delete = time.perf_counter() - began
    steps, deleted = [], 1
    while deleted:
        t = time.perf_counter()
        deleted = store.prune(before=second, limit=STEP)
        steps.append(time.perf_counter() - t)
    t = time.perf_counter()
    store.add_trigger("after", now=T0)
    ack = time.perf_counter() - t
    store.close()
    return {"mb": size, "rows": float(rows), "one_delete_ms": one_delete * 1000, "steps": float(len(steps)),
            "step_p50_ms": percentile(steps, 50) * 1000, "step_max_ms": max(steps) * 1000,
            "ack_after_ms": ack * 1000}


def _wal(path: str) -> int:
    return os.path.getsize(path + "-wal") if os.path.exists(path + "-wal") else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 200 triggers, a 5 MB database")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--triggers", type=int, default=5000)
    parser.add_argument("--mb", type=int, default=1024, help="size of the database pruned (default 1024)")
    parser.add_argument("--dir", help="where the files go (default: a temporary folder on the current disk)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.triggers, args.mb = 1, 200, 5
    folder = tempfile.mkdtemp(prefix="bench-store-", dir=args.dir or os.getcwd())
    try:
        results = {mode: [] for mode in ("normal", "full", "grouped")}
        for _ in range(args.rounds):
            for mode in results:
                results[mode].append(acknowledgements(folder, mode, args.triggers))
        _report_acks(results, args)
        _report_prune(pruning(folder, args.mb))
    finally:
        shutil.rmtree(folder)
    return 0


def _report_acks(results: dict, args) -> None:
    print(f"Acknowledged triggers, {args.triggers} add_trigger calls on a real file, "
          f"{args.rounds} round(s) (median, min–max):\n")
    print("| how | acknowledged /s | p50 µs | p99 µs |\n|---|---|---|---|")
    names = {"normal": "before: synchronous = NORMAL (lost on power failure)",
             "full": "now: synchronous = FULL per acknowledgement",
             "grouped": f"now, grouped: {GROUP} per batch(durable=True)"}
    for mode, rounds in results.items():
        rates = [r["per_s"] for r in rounds]
        cells = [f"{median(rates):.0f} ({min(rates):.0f}–{max(rates):.0f})"]
        for key in ("p50_us", "p99_us"):
            cells.append(f"{median([r[key] for r in rounds]):.0f}" if key in rounds[0] else "")
        print(f"| {names[mode]} | " + " | ".join(cells) + " |")


def _report_prune(p: dict) -> None:
    print(f"\nPruning a {p['mb']:.0f} MB database ({p['rows']:.0f} rows each of runs and triggers, "
          f"twice as many events):\n")
    print(f"- before: one DELETE per table for a tenth of it held the write lock {p['one_delete_ms']:.0f} ms")
    print(f"- now: the next tenth in {p['steps']:.0f} prune(limit={STEP}) steps: {p['step_p50_ms']:.1f} ms "
          f"each (p50), {p['step_max_ms']:.1f} ms at most; an add_trigger right after: {p['ack_after_ms']:.2f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
