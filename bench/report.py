"""What a run leaves behind: the raw JSON (every sample and every failure) and the
Markdown table (median, min–max, n, and ratios) with a header saying where, when, on
what and with which command it was measured. A failed measurement stays in the table
as failed, with its reason."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from . import ROOT, measure
from .scenarios import MIN_AGE

LEAD = "aios"          # the system whose ratio to the best peer is shown


# ---------------------------------------------------------------- the header facts

def meta(command: str, settings, bytecode: str, systems, installs: dict | None = None) -> dict:
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": command,
        "settings": settings._asdict(),
        "machine": machine(),
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable,
                   "site": "imported by every measured Python process (no -S), as `python3 "
                           "simple_orchestrator.py` does; the floor is also shown with -S",
                   "pth_imports": pth_imports()},
        "bytecode": bytecode,
        "aios": git_state(),
        "systems": {system.name: system.describe() for system in systems},
        "stop": {system.name: system.stop_how for system in systems if system.kind == "manager"},
        "peers": {name: install._asdict() for name, install in (installs or {}).items()},
    }


def pth_imports() -> list[str]:
    """.pth files that run code whenever `site` is imported: they add to the floor and
    to every Python daemon's start-up, and differ from machine to machine."""
    import site

    folders = site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])
    found = []
    for folder in map(Path, folders):
        for pth in sorted(folder.glob("*.pth")) if folder.is_dir() else ():
            if any(line.startswith(("import ", "import\t")) for line in pth.read_text(errors="replace").splitlines()):
                found.append(str(pth))
    return found


def machine() -> dict:
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": _cpu_model(),
            "kernel": f"{platform.system()} {platform.release()}",
            "loadavg_at_start": loadavg()}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_state() -> dict:
    """The commit measured and any uncommitted change to what is measured."""
    dirty = _git("status", "--porcelain", "--", "aios", "simple_orchestrator.py").splitlines()
    return {"commit": _git("rev-parse", "--short", "HEAD").strip() or "unknown",
            "uncommitted": [line[3:] for line in dirty if line.strip()]}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


# ---------------------------------------------------------------- files

def write_json(data: dict, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (time.strftime("%Y%m%dT%H%M%S") + ".json")
    path.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    return path


# ---------------------------------------------------------------- the table

def markdown(data: dict) -> str:
    return "\n".join(_header(data["meta"]) + [""] + table(data) + [""] + _failures(data) + _notes(data["meta"]))


def _header(m: dict) -> list[str]:
    mach, py, git = m["machine"], m["python"], m["aios"]
    dirty = f"; uncommitted changes in {', '.join(git['uncommitted'])}" if git["uncommitted"] else ""
    systems = "; ".join(f"{name} = `{text}`" for name, text in m["systems"].items())
    pth = ", ".join(f"`{Path(p).name}`" for p in py["pth_imports"]) or "none"
    rounds = m["settings"]["rounds"]
    return [
        "# Benchmarks", "",
        (f"- Command: `{m['command']}` ({rounds} round(s); within a round each scenario runs once per "
         "system, systems alternating A B A B)"),
        f"- Date: {m['date']}",
        (f"- Machine: {mach['nproc']} CPU(s) (nproc), {mach['cpu_model']}, {mach['kernel']}, "
         f"load average {' '.join(map(str, mach['loadavg_at_start']))} at start, "
         f"{' '.join(map(str, mach.get('loadavg_at_end', [])))} at end"),
        (f"- Python: {py['implementation']} {py['version']} at `{py['executable']}` (sys.executable, not a "
         f"PATH shim); `site` {py['site']}; .pth files that run code at start-up: {pth}"),
        f"- Bytecode: {m['bytecode']}",
        f"- AIOS: commit {git['commit']}{dirty}",
        f"- Systems: {systems}",
        f"- Peers: {_peers(m.get('peers', {}))}",
        f"- Stopped (shutdown rows) by: {'; '.join(f'{k}: {v}' for k, v in m.get('stop', {}).items())}",
    ]


def _peers(installs: dict) -> str:
    if not installs:
        return "none measured (AIOS alone)"
    return "; ".join(f"{name} {i['version']} ({i['note']})" if not i["error"] else f"{name}: {i['error']}"
                     for name, i in installs.items())


def table(data: dict) -> list[str]:
    peers = _has_peers(data)
    head = "| Scenario: measure | System | Median | Min–max | n | × floor |" + (" AIOS / best peer |" if peers else "")
    lines = [head, "|" + "---|" * (7 if peers else 6)]
    for scenario in data["scenarios"]:
        for row in scenario["rows"]:
            for system, entry in data["results"][scenario["key"]].items():
                if entry["samples"].get(row["key"]) or entry["failures"]:   # else: not applicable
                    lines.append(_line(data, scenario, row, system, entry, peers))
    return lines


def _line(data, scenario, row, system, entry, peers: bool) -> str:
    samples = entry["samples"].get(row["key"])
    failed = len(entry["failures"])
    label = f"{scenario['title']}: {row['label']}"
    if not samples:
        what = f"failed: {_short(entry['failures'][0]['error'])}" if failed else "n/a"
        cells = [label, system, what, "", f"0 of {failed}" if failed else "", ""]
    else:
        s = measure.spread(samples)
        n = f"{s['n']}" + (f" ({failed} failed)" if failed else "")
        cells = [label, system, f"{fmt(s['median'])} {row['unit']}", f"{fmt(s['min'])}–{fmt(s['max'])}", n,
                 _ratio(s["median"], _floor_median(data, row, system))]
    if peers:
        cells.append(_peer_ratio(data, scenario["key"], row["key"]) if system == LEAD else "")
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}×" if base else ""


def _median_of(data, scenario_key: str, system: str, row_key: str) -> float | None:
    entry = data["results"].get(scenario_key, {}).get(system)
    samples = entry and entry["samples"].get(row_key)
    return measure.median(samples) if samples else None


def _floor_median(data, row: dict, system: str) -> float | None:
    interpreter = data["floor_of"].get(system)
    if not row["floor"] or not interpreter:
        return None
    return _median_of(data, "floor", interpreter, row["floor"])


def _peers_of_lead(data) -> list[str]:
    """The other process managers (every one has a floor), not variants of AIOS itself."""
    return data.get("peers", [name for name in data["floor_of"] if name != LEAD])


def _has_peers(data) -> bool:
    compared = {LEAD, *_peers_of_lead(data)}
    return any(len(compared & set(results)) > 1 for results in data["results"].values())


def _peer_ratio(data, scenario_key: str, row_key: str) -> str:
    lead = _median_of(data, scenario_key, LEAD, row_key)
    peers = [_median_of(data, scenario_key, name, row_key) for name in _peers_of_lead(data)]
    peers = [p for p in peers if p is not None]
    return _ratio(lead, min(peers)) if lead is not None and peers else ""


def _failures(data) -> list[str]:
    lines = []
    for key, results in data["results"].items():
        for system, entry in results.items():
            lines += [f"- {key} / {system}, round {f['round']}: {' '.join(f['error'].split())}"
                      for f in entry["failures"]]
    return (["Failures:", ""] + lines + [""]) if lines else ["Failures: none.", ""]


def _notes(m: dict) -> list[str]:
    s = m["settings"]
    return [(
        "How it is measured: every time runs from the moment the command is spawned "
        "(before the interpreter exists) until the effect is visible in /proc, polled every 1 ms; "
        "\"running\" means the managed process has exec'd its program. Memory is VmRSS/VmHWM from "
        "/proc/PID/status (for the floor: of the interpreter started and idle, blocked reading stdin); CPU is "
        f"utime+stime from /proc/PID/stat (resolution {1000 / measure.CLK_TCK:g} ms) over "
        f"{s['cpu_window']:g} s after a {s['settle']:g} s settle. A managed process is killed only after it "
        f"has run {MIN_AGE:g} s, so crash recovery is not a crash-loop backoff. × floor divides the median "
        "by the median of the system's interpreter floor measured in the same run; AIOS / best peer divides "
        "AIOS's median by the lowest peer median of the same row (below 1 means AIOS is ahead). \"Control "
        "endpoint answers\" is a real request answered: AIOS `ping` on aios.sock, supervisord XML-RPC "
        "`supervisor.getState` on its unix socket, circus `status` on its ZeroMQ endpoint, pm2 `ping` over its "
        "axon RPC socket (the last two from a probe process armed before the launch). Daemons are left to settle "
        f"{s['settle']:g} s before a shutdown (circus loses a SIGTERM that arrives while it is still starting "
        "watchers). The every-1s lateness is started − due as the daemon records them in its runs table."
    )]
