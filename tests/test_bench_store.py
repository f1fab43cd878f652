"""bench.store_backends cannot rot: its quick mode runs here against the test PostgreSQL. Only the
shape of the results is checked, never speed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_store_bench_measures_every_row_on_both_backends(pg_dsn, tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.store_backends", "--quick", "--pg", pg_dsn,
                           "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    (result,) = tmp_path.glob("store-*.json")
    samples = json.loads(result.read_text())["samples"]
    assert set(samples) == {"add_1", "add_3", "claim_1", "claim_3"}
    for key, by_backend in samples.items():
        clients = int(key[-1])
        for backend in ("sqlite", "postgres"):
            (sample,) = by_backend[backend]
            assert sample["done"] == 50 * clients and sample["per_s"] > 0, (key, backend)
    assert "| triggers acknowledged/s, 3 clients |" in done.stdout
