"""The jobs of one configuration as a whole: what ties one job to others.

- Hooks (`on_failure`, `on_success`) and `after` lists name other jobs: `check` refuses,
  at load, a name that is not a job of aios.toml, a hook or `after` naming an always job
  (it cannot be triggered, and never ends for good), and any cycle of them (a job whose
  end would, through hooks and `after`, trigger itself), with one line naming the cycle.
- `instances = N` on an always job makes N copies of it, jobs `NAME.0` .. `NAME.N-1`
  (`expand`), each with `instance` and `instance_of` set; `group_of` and `kept_by` find a
  copy's group again by its name alone (the form `NAME.DIGITS`).
- `after_ready` is the rule of `after`: when a job waiting for others is due.

Pure: no clock, no I/O. Imports aios.spec.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from .spec import NAME_RE, JobSpec, JobType, Outcome, Run, replace

__all__ = ["check", "expand", "as_copy", "group_of", "kept_by", "after_ready"]

HOOKS = ("on_failure", "on_success")
_COPY_RE = re.compile(r"(.+)\.(\d+)")


# ---------------------------------------------------------------- links between jobs

def check(specs: dict, tables: dict, defined: Mapping, errors: list, invalid: dict) -> None:
    """Drop from `specs` and `tables` (into `invalid`, and a line into `errors`) every job
    whose hook or `after` names no job of `defined` (every [jobs.NAME] table, valid or not,
    by name) or an always job, then, for each cycle of hooks and `after` lists, every job
    whose table holds one of its links. A hook may name a job whose own table is invalid:
    its triggers wait for it to be fixed."""
    for name, spec in list(specs.items()):
        problem = _dangling(spec, defined)
        if problem:
            _refuse([name], f"job {name!r}: {problem}", specs, tables, errors, invalid)
    while True:
        cycle = _find_cycle(specs)
        if not cycle:
            return
        owners = dict.fromkeys(owner for _, _, owner in cycle)    # the jobs that hold its links
        _refuse(list(owners), _cycle_text(cycle), specs, tables, errors, invalid)


def _links(spec: JobSpec):
    """(field, named job) of every link of spec."""
    for key in HOOKS:
        if getattr(spec, key):
            yield key, getattr(spec, key)
    for name in spec.after_jobs:
        yield "after", name


def _dangling(spec: JobSpec, defined: Mapping) -> str | None:
    for key, name in _links(spec):
        table = defined.get(name)
        if table is None:
            known = ", ".join(sorted(n for n in defined if n != spec.name)[:20]) or "none"
            return f"{key} names {name!r}, which is not a job of aios.toml (jobs: {known})"
        if isinstance(table, dict) and table.get("type") == JobType.ALWAYS.value:
            why = "it cannot be triggered" if key in HOOKS else "it never ends for good"
            return f"{key} names {name!r}, an always job; {why}: name a trigger job"
    return None


def _edges(spec: JobSpec, specs: dict, followers: dict):
    """(job, link, the job whose table holds the link) for each job that the end of a run
    of `spec` may trigger; followers: job name -> the jobs that name it in `after`."""
    for key in HOOKS:
        target = getattr(spec, key)
        if target in specs:
            yield target, f"{spec.name} {key} = {target}", spec.name
    for other in followers.get(spec.name, ()):
        yield other, f"{other} after {spec.name}", other


def _find_cycle(specs: dict) -> list[tuple[str, str, str]] | None:
    """One cycle as [(job, the link from it to the next, that link's holder), ...], or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[tuple[str, str, str]] = []
    followers: dict[str, list[str]] = {}
    for spec in specs.values():
        for name in spec.after_jobs:
            followers.setdefault(name, []).append(spec.name)

    def visit(name: str) -> list | None:
        state[name] = 1
        for target, link, owner in _edges(specs[name], specs, followers):
            path.append((name, link, owner))
            if state.get(target) == 1:
                return path[next(i for i, (n, _, _) in enumerate(path) if n == target):]
            if target not in state:
                found = visit(target)
                if found:
                    return found
            path.pop()
        state[name] = 2
        return None

    for name in specs:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def _cycle_text(cycle: list) -> str:
    if len(cycle) == 1:
        return f"job {cycle[0][0]!r} triggers itself ({cycle[0][1]}); remove this link"
    names = " -> ".join([name for name, _, _ in cycle] + [cycle[0][0]])
    links = "; ".join(link for _, link, _ in cycle)
    return f"jobs {names} trigger each other in a cycle ({links}); remove one of these links"


def _refuse(names, message: str, specs: dict, tables: dict, errors: list, invalid: dict) -> None:
    errors.append(message)
    for name in names:
        specs.pop(name, None)
        tables.pop(name, None)
        invalid[name] = message


# ---------------------------------------------------------------- instances

def expand(specs: dict, tables: dict, errors: list, invalid: dict) -> tuple[dict, dict]:
    """Specs and tables with each job that has `instances` replaced by its copies, in
    order; a job whose copies' names are not valid or are taken by other jobs (letter case
    aside) goes to `invalid` instead. A copy's table is its job's, without `instances`:
    changing the count adds or removes copies and leaves the others as they are."""
    taken = {name.lower() for name in (*specs, *invalid)}
    out_specs, out_tables = {}, {}
    for name, spec in specs.items():
        if spec.instances is None:
            out_specs[name], out_tables[name] = spec, tables[name]
            continue
        copies = [f"{name}.{index}" for index in range(spec.instances)]
        clash = next((c for c in copies if c.lower() in taken or not NAME_RE.fullmatch(c)), None)
        if clash is not None:
            why = "is longer than 64 characters" if not NAME_RE.fullmatch(clash) else "is also a job of aios.toml"
            message = (f"job {name!r}: instances = {spec.instances} names a copy {clash!r}, which {why}; "
                       "rename one of them")
            errors.append(message)
            invalid[name] = message
            continue
        table = {key: value for key, value in tables[name].items() if key != "instances"}
        for index, copy in enumerate(copies):
            out_specs[copy], out_tables[copy] = as_copy(spec, name, index), table
    return out_specs, out_tables


def as_copy(spec: JobSpec, group: str, index: int) -> JobSpec:
    return replace(spec, name=f"{group}.{index}", instances=None, instance=index, instance_of=group)


def group_of(name: str) -> str | None:
    """The job that a job named like a copy (`web.2`) would be a copy of, or None."""
    match = _COPY_RE.fullmatch(name)
    return match[1] if match else None


def kept_by(name: str, invalid: Mapping) -> str | None:
    """Why a running job `name` keeps its previous table: its own new table is invalid,
    or it is a copy whose job's new table is."""
    if name in invalid:
        return invalid[name]
    group = group_of(name)
    return invalid.get(group) if group is not None else None


# ---------------------------------------------------------------- after

def after_ready(spec: JobSpec, latest: Mapping[str, Run | None], own_start: float | None) -> bool:
    """The rule of `after`: a job is due when the latest finished run of every job it
    lists ended ok, and ended after its own latest run started (any run, any outcome; a
    job that never ran counts every success). `latest` maps each listed job to its latest
    finished run (None: none, or the job does not run here)."""
    for name in spec.after_jobs:
        run = latest.get(name)
        if run is None or run.outcome is not Outcome.OK or run.ended is None:
            return False
        if own_start is not None and run.ended <= own_start:
            return False
    return bool(spec.after_jobs)

