"""python3 -m bench [--quick] [--rounds N] [--only SCENARIO ...] [--no-peers | --installed-peers] [--pg URL] [--out DIR]

Runs every scenario on every system, round after round (systems alternating A B A B
within a round), writes the raw JSON to bench/results/<timestamp>.json (or --out) and
prints the Markdown table. A full run (not --quick, no --only, peers included, at least
5 rounds) also writes BENCHMARKS.md at the repository root. Peers (supervisord, circus,
pm2) are installed into bench/.peers and bench/.node when missing; --quick measures
AIOS alone and installs nothing. The fleet rows run only when asked for (`--only
fleet`, or one of their keys): AIOS on SQLite beside AIOS on PostgreSQL (aios-pg), and
fleets of daemons on PostgreSQL (--pg URL, else $AIOS_BENCH_PG_DSN, else a server
started with pgserver).
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from . import ROOT, peers, plan, report, scenarios
from .pg import Postgres
from .systems import floor, process_env
from .systems.aios import Aios, AiosPostgres
from .systems.circus import Circus
from .systems.pm2 import Pm2
from .systems.supervisord import Supervisord

MIN_FULL_ROUNDS = 5


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true",
                        help="1 round, small counts, short windows (the test suite runs this)")
    parser.add_argument("--rounds", type=int, help="rounds (default: 5, or 1 with --quick)")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO",
                        help="scenario families or keys, e.g. cold_start shutdown_100 (the floor always runs)")
    parser.add_argument("--no-peers", action="store_true", help="measure AIOS alone (implied by --quick)")
    parser.add_argument("--installed-peers", action="store_true",
                        help="measure beside the peers an earlier run installed (bench/.peers, bench/.node), "
                             "installing nothing; also with --quick")
    parser.add_argument("--pg", metavar="URL", help="admin URL of the PostgreSQL server for the fleet rows "
                                                    "(default: $AIOS_BENCH_PG_DSN, else start one with pgserver)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the JSON results")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="keep the caller's environment as is (e.g. PYTHONDONTWRITEBYTECODE=1: "
                             "every start compiles AIOS from source)")
    return parser.parse_args(argv)


def settings_of(args) -> scenarios.Settings:
    base = scenarios.QUICK if args.quick else scenarios.FULL
    return base._replace(rounds=args.rounds) if args.rounds else base


OPT_IN = {"fleet"}    # families that run only when named (they need more than this machine's AIOS)


def select(plan: list[scenarios.Scenario], only) -> list[scenarios.Scenario]:
    if not only:
        return [s for s in plan if s.family not in OPT_IN]
    known = {s.key for s in plan} | {s.family for s in plan}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise SystemExit(f"bench: unknown scenario {unknown[0]!r}; choose from {', '.join(sorted(known))}")
    return [s for s in plan if s.family == "floor" or s.key in only or s.family in only]


def main(argv: list[str]) -> int:
    args = parse(argv)
    settings = settings_of(args)
    chosen = select(plan.plan(settings) + plan.fleet_plan(settings), args.only)
    command = "python3 -m bench" + (" " + shlex.join(argv) if argv else "")
    scratch = Path(tempfile.mkdtemp(prefix="aios-bench-"))
    postgres = Postgres(args.pg) if any(s.family in OPT_IN for s in chosen) else None
    try:
        env, bytecode = process_env(None if args.no_bytecode_cache else scratch / "pycache")
        installs = peers.installed() if args.installed_peers else \
            {} if settings.quick or args.no_peers else peers.ensure_all(_say)
        systems = make_systems(env, scratch, installs, postgres)
        data = {"meta": report.meta(command, settings, bytecode, systems, installs),
                "floor_of": {s.name: s.interpreter for s in systems if s.kind == "manager"},
                "peers": [s.name for s in systems if s.kind == "manager" and s.name != report.LEAD
                          and s.variant_of is None],
                "scenarios": [_describe(s) for s in chosen],
                "results": run_rounds(settings, chosen, systems)}
        data["meta"]["machine"]["loadavg_at_end"] = report.loadavg()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if postgres is not None:
            postgres.close()
    return finish(data, args, settings)


def make_systems(env: dict, scratch: Path, installs: dict[str, peers.Install],
                 postgres: Postgres | None = None) -> list:
    """The floors first, then AIOS (and AIOS on PostgreSQL, given a server for the fleet
    rows), then each peer (installed or not: an uninstallable peer stays in the table
    with its reason)."""
    systems = [floor.python(env)]
    if installs.get("pm2") and peers.node():
        systems.append(floor.node(env, peers.node()))
    systems.append(Aios(env, scratch))
    if postgres is not None:
        systems.append(AiosPostgres(env, scratch, postgres))
    kinds = {"supervisord": Supervisord, "circus": Circus, "pm2": Pm2}
    return systems + [kinds[name](env, scratch, install) for name, install in installs.items()]


def _describe(scenario: scenarios.Scenario) -> dict:
    return {"key": scenario.key, "family": scenario.family, "title": scenario.title, "needs": scenario.needs,
            "rows": [row._asdict() for row in scenario.rows]}


def finish(data: dict, args, settings) -> int:
    path = report.write_json(data, args.out)
    text = report.markdown(data)
    print(text)
    if settings.quick or args.only or args.no_peers or args.installed_peers or settings.rounds < MIN_FULL_ROUNDS:
        _say(f"raw results: {path}; BENCHMARKS.md not written (only a full run with the peers, of at "
             f"least {MIN_FULL_ROUNDS} rounds, writes it)")
    else:
        (ROOT / "BENCHMARKS.md").write_text(text + "\n")
        _say(f"raw results: {path}; table written to {ROOT / 'BENCHMARKS.md'}")
    failed = any(e["failures"] for r in data["results"].values() for e in r.values())
    return 1 if failed else 0


# ---------------------------------------------------------------- the rounds

def run_rounds(settings: scenarios.Settings, chosen, systems) -> dict:
    results = {s.key: {} for s in chosen}
    warm_up(systems, settings)
    for number in range(1, settings.rounds + 1):
        for scenario in chosen:
            for system in systems:
                if scenario.needs in system.features:
                    run_one(results[scenario.key], scenario, system, number, settings.rounds)
    return results


def warm_up(systems, settings: scenarios.Settings) -> None:
    """One untimed start of each system: fills the bytecode cache and the page cache."""
    for system in systems:
        if system.unavailable():
            continue
        try:
            if system.kind == "manager":
                scenarios.warm_up(system, settings)
                if "default_config" in system.features:
                    scenarios.cold_start(system, None, 1, settings)
            else:
                scenarios.floor(system)
        except Exception as exc:  # noqa: BLE001 -- reported again, with its round, by the scenarios
            _say(f"warm-up of {system.name} failed: {exc}")


def run_one(bucket: dict, scenario, system, number: int, rounds: int) -> None:
    entry = bucket.setdefault(system.name, {"samples": {}, "failures": []})
    reason = system.unavailable()
    try:
        if reason:
            raise RuntimeError(f"unavailable: {reason}")
        got = scenario.run(system)
    except Exception as exc:  # noqa: BLE001 -- any failure is a result: reported, never dropped
        entry["failures"].append({"round": number, "error": f"{type(exc).__name__}: {exc}"})
        _say(f"[{number}/{rounds}] {scenario.key} {system.name}: FAILED {exc}")
        return
    for key, values in got.items():
        entry["samples"].setdefault(key, []).extend(values)
    shown = ", ".join(f"{k}={'/'.join(report.fmt(x) for x in v)}" for k, v in got.items() if len(v) <= 5)
    _say(f"[{number}/{rounds}] {scenario.key} {system.name}: {shown}")


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
