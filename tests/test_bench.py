"""The benchmark harness cannot rot: its quick mode runs here, on AIOS, into a temp folder.
Only liveness and the shape of the results are checked, never speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import QUICK

ROOT = Path(__file__).resolve().parents[1]
FEW, MANY = QUICK.few, QUICK.many
QUICK_SCENARIOS = {   # scenario -> the system it is measured on in quick mode (AIOS alone, no peers)
    "floor": "python",
    "cold_start_1": "aios", "cold_start_default": "aios", f"cold_start_{MANY}": "aios", "spawn_python": "aios",
    "cli": "aios", "restart": "aios", "crash_recovery": "aios", f"shutdown_{FEW}": "aios",
    f"shutdown_{MANY}": "aios", f"rss_{FEW}": "aios", f"rss_{MANY}": "aios", "idle_cpu": "aios", "scale": "aios",
    "interval_lateness": "aios", "triggers_socket": "aios", "triggers_clients": "aios", "triggers_rows": "aios",
    "dispatch": "aios",
    "round_trip": "aios", "reexec": "aios", "logs": "aios", "adoption": "aios",
    "python_launch": "aios", "python_heavy": "aios", "python_many": "aios", "python_pss": "aios",
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    markdown = ROOT / "BENCHMARKS.md"
    before = markdown.read_bytes() if markdown.exists() else None
    scratch = tmp_path_factory.mktemp("bench-tmp")      # the run's temp folders, to find survivors
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                          env={**os.environ, "TMPDIR": str(scratch)},
                          capture_output=True, text=True, timeout=240, check=False)
    after = markdown.read_bytes() if markdown.exists() else None
    files = list(out.glob("*.json"))
    return done, files, before == after, str(scratch)


def test_quick_run_succeeds_and_leaves_benchmarks_md_alone(quick_run):
    done, files, markdown_untouched, _ = quick_run
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
    assert meta["peers"] == {}                       # quick mode installs and measures no peer


def test_quick_run_leaves_no_process_behind(quick_run):
    """Every daemon and managed process the run started is gone (their homes were under
    the run's TMPDIR, so any survivor still names it in its environment)."""
    marker = quick_run[3].encode()
    survivors = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as env:
                if marker in env.read():
                    survivors.append(pid)
        except OSError:
            pass
    assert survivors == []


def test_compare_puts_two_runs_side_by_side(quick_run):
    _, files, _, _ = quick_run
    done = subprocess.run([sys.executable, "-m", "bench.compare", str(files[0]), str(files[0])], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    rows = done.stdout.splitlines()[2:]
    assert any(row.startswith("| Cold start, 1 always job: launch → first managed process running |") for row in rows)
    assert rows and all(" | 1.00× | " in row for row in rows), done.stdout


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


def test_uninstallable_peer_is_reported_not_dropped(tmp_path):
    from bench import peers
    from bench.systems.circus import Circus

    broken = peers.Install("circus", error="could not be installed: pip exited 1: no matching distribution")
    system = Circus({}, tmp_path, broken)
    assert system.unavailable() == broken.error


def test_profiling_reads_importtime_lines():
    from bench.profiling import parse_importtime

    text = ("import time: self [us] | cumulative | imported package\n"
            "import time:       138 |        138 |       _typing\n"
            "import time:      2099 |       2237 |     typing\n"
            "import time:       151 |       5919 | tomllib\n")
    assert parse_importtime(text) == [(138, 138, 3, "_typing"), (2099, 2237, 2, "typing"), (151, 5919, 0, "tomllib")]


def test_store_figures_quick_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench.store", "--quick", "--dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "/s" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| before: synchronous = NORMAL (lost on power failure)",
                                                      "| now: synchronous = FULL per acknowledgement",
                                                      "| now, grouped: 100 per batch(durable=True)"]
    assert "prune(limit=1000) steps" in done.stdout
    assert list(tmp_path.iterdir()) == []   # its files are removed
