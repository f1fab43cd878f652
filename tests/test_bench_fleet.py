"""The fleet rows of the benchmark cannot rot: `python3 -m bench --quick --only fleet` runs
here against the test PostgreSQL (so it fails in CI without one). Only the shape of the
results and that nothing is left behind are checked, never speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {   # scenario -> the systems it is measured on
    "floor": {"python"}, "fleet_cold_start": {"aios", "aios-pg"}, "fleet_trigger_rtt": {"aios", "aios-pg"},
    "fleet_dispatch": {"aios", "aios-pg"}, "fleet_triggers": {"aios-pg"}, "fleet_remote": {"aios-pg"},
    "fleet_failover": {"aios-pg"}, "fleet_idle": {"aios-pg"},
}


def schemas(pg_dsn: str) -> set[str]:
    import psycopg

    with psycopg.connect(pg_dsn) as db:
        return {row[0] for row in db.execute("SELECT nspname FROM pg_namespace")}


@pytest.fixture(scope="module")
def quick_fleet_run(pg_dsn, tmp_path_factory):
    out, scratch = tmp_path_factory.mktemp("bench-fleet-results"), tmp_path_factory.mktemp("bench-fleet-tmp")
    before = schemas(pg_dsn)
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "fleet", "--pg", pg_dsn,
                           "--out", str(out)],
                          cwd=ROOT, env={**os.environ, "TMPDIR": str(scratch)}, capture_output=True, text=True,
                          timeout=400, check=False)
    return done, list(out.glob("*.json")), str(scratch), schemas(pg_dsn) - before


def test_every_fleet_row_is_measured_on_its_systems(quick_fleet_run):
    done, files, _, _ = quick_fleet_run
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(files[0].read_text())
    assert {s["key"] for s in data["scenarios"]} == set(EXPECTED)
    assert data["peers"] == [], "AIOS on PostgreSQL is a variant of AIOS, not a peer"
    for scenario in data["scenarios"]:
        assert set(data["results"][scenario["key"]]) == EXPECTED[scenario["key"]], scenario["key"]
        for system, entry in data["results"][scenario["key"]].items():
            assert entry["failures"] == [], (scenario["key"], system, entry["failures"])
            for row in scenario["rows"]:
                samples = entry["samples"][row["key"]]
                assert samples and all(isinstance(v, (int, float)) and v >= 0 for v in samples), (scenario, row)
    idle = data["results"]["fleet_idle"]["aios-pg"]["samples"]
    assert idle["connections"] == [2.0 * 5], "each daemon holds two connections"
    assert "| Fleet of 2 devices: 10 triggers on A's socket for device B" in done.stdout


def test_the_fleet_rows_leave_no_process_and_no_schema_behind(quick_fleet_run):
    done, _, scratch, new_schemas = quick_fleet_run
    assert done.returncode == 0, done.stderr[-3000:]
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as env, open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if scratch.encode() in env.read() + cmdline.read():
                    survivors.append(pid)
        except OSError:
            pass
    assert survivors == []
    assert new_schemas == set()
