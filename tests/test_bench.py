"""The benchmark harness cannot rot: its quick mode runs here, on AIOS, into a temp folder.
Only liveness and the shape of the results are checked, never speed (../shared/BENCH.md)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import QUICK

ROOT = Path(__file__).resolve().parents[1]
FEW, MANY = QUICK.few, QUICK.many
QUICK_SCENARIOS = {   # scenario -> the system it is measured on in quick mode
    "floor": "python",
    "cold_start_1": "aios", "cold_start_default": "aios", f"cold_start_{MANY}": "aios",
    "crash_recovery": "aios", f"shutdown_{FEW}": "aios", f"shutdown_{MANY}": "aios",
    f"rss_{FEW}": "aios", f"rss_{MANY}": "aios", "idle_cpu": "aios", "interval_lateness": "aios",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    markdown = ROOT / "BENCHMARKS.md"
    before = markdown.read_bytes() if markdown.exists() else None
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    after = markdown.read_bytes() if markdown.exists() else None
    files = list(out.glob("*.json"))
    return done, files, before == after


def test_quick_run_succeeds_and_leaves_benchmarks_md_alone(quick_run):
    done, files, markdown_untouched = quick_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(files) == 1, files
    assert markdown_untouched
    assert "| Scenario: measure | System | Median |" in done.stdout


def test_every_scenario_has_numeric_samples_for_every_row(quick_run):
    data = json.loads(quick_run[1][0].read_text())
    assert {s["key"] for s in data["scenarios"]} == set(QUICK_SCENARIOS)
    for scenario in data["scenarios"]:
        entry = data["results"][scenario["key"]][QUICK_SCENARIOS[scenario["key"]]]
        assert entry["failures"] == [], (scenario["key"], entry["failures"])
        for row in scenario["rows"]:
            samples = entry["samples"][row["key"]]
            assert samples and all(isinstance(v, (int, float)) and v >= 0 for v in samples), (scenario, row)


def test_header_names_machine_python_and_command(quick_run):
    meta = json.loads(quick_run[1][0].read_text())["meta"]
    assert meta["command"].startswith("python3 -m bench --quick")
    assert meta["python"]["executable"] == sys.executable
    assert meta["machine"]["nproc"] >= 1 and meta["machine"]["cpu_model"]


def test_report_keeps_failures_and_compares_peers():
    from bench import report

    rows = [{"key": "stop_ms", "label": "stop", "unit": "ms", "floor": None}]
    data = {
        "floor_of": {"aios": "python", "peer": "python"},
        "scenarios": [{"key": "shutdown_10", "title": "Shutdown", "rows": rows}],
        "results": {"shutdown_10": {
            "aios": {"samples": {"stop_ms": [10.0, 30.0, 20.0]}, "failures": []},
            "peer": {"samples": {"stop_ms": [40.0]}, "failures": [{"round": 2, "error": "boom"}]},
            "other": {"samples": {}, "failures": [{"round": 1, "error": "not installed"}]},
        }},
    }
    lines = report.table(data)
    assert "AIOS / best peer" in lines[0]
    assert "| 20.0 ms | 10.0–30.0 | 3 |  | 0.50× |" in lines[2]
    assert "1 (1 failed)" in lines[3]
    assert "failed: not installed" in lines[4]
