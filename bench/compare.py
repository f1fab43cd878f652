"""python3 -m bench.compare OLD.json NEW.json [SYSTEM]: one system's medians in two runs
of `python3 -m bench` side by side, with NEW / OLD, and each run's own ratio to its
floor (`× floor`), which is the figure to trust across runs on a noisy machine: both
runs measured their floor beside the system. Rows only one run has are left out."""
from __future__ import annotations

import json
import sys

from .measure import median


def rows(path: str, system: str) -> dict[tuple[str, str], tuple[float, str, float | None]]:
    """(scenario title, row label) -> (median, unit, median / the run's floor median)."""
    data = json.load(open(path, encoding="utf-8"))
    floors = {key: median(values) for key, values in data["results"]["floor"]["python"]["samples"].items()}
    found = {}
    for scenario in data["scenarios"]:
        samples = data["results"].get(scenario["key"], {}).get(system, {}).get("samples", {})
        for row in scenario["rows"]:
            values = samples.get(row["key"])
            if values:
                value, floor = median(values), floors.get(row.get("floor") or "")
                found[(scenario["title"], row["label"])] = (value, row["unit"], value / floor if floor else None)
    return found


def main(argv: list[str]) -> int:
    old, new = rows(argv[0], argv[2] if len(argv) > 2 else "aios"), rows(argv[1], argv[2] if len(argv) > 2 else "aios")
    print("| Scenario: measure | before | after | after / before | × floor before → after |")
    print("|---|---|---|---|---|")
    for key in (key for key in new if key in old and old[key][0]):
        (a, unit, fa), (b, _, fb) = old[key], new[key]
        floors = f"{fa:.2f}× → {fb:.2f}×" if fa and fb else ""
        print(f"| {key[0]}: {key[1]} | {a:.4g} {unit} | {b:.4g} {unit} | {b / a:.2f}× | {floors} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
