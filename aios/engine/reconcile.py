"""Bringing the engine's jobs in line with a newly loaded configuration (`aios apply`):
added jobs start, removed ones stop and are forgotten, changed ones take their new spec
(a running always job restarts on it), and a job whose new table is invalid keeps
running on its previous spec, with the error shown in its status (so do the copies of a
job with `instances`; a changed count only adds or removes copies). Queued triggers are
never touched: a trigger of a job that left the configuration waits for it to return.
`changes` says the same beforehand, as a pure function (`aios apply --check`). Part of
the engine.
"""
from __future__ import annotations

from .. import lifecycle as lc
from ..jobset import kept_by


def reconcile(engine, cfg) -> dict:
    """Apply `cfg` (a config.Config) to the running engine; the names by what happened."""
    diff = {"added": [], "removed": [], "changed": [], "unchanged": []}
    engine.settings = cfg.settings
    tables = dict(cfg.tables)
    for name in [n for n in engine.jobs if n not in cfg.specs]:
        job, why = engine.jobs[name], kept_by(name, cfg.invalid)
        if why:
            job.problem = f"its new table is invalid, so it runs on the previous one: {why}"
            tables[name] = engine.tables.get(name, {})
            diff["unchanged"].append(name)
        else:
            diff["removed"].append(name)
            engine.handle(job, lc.Remove())
    added = _update(engine, cfg, diff)
    running = set(engine.jobs) | {job.spec.instance_of for job in engine.jobs.values()}
    engine.tables, engine.invalid = tables, {n: e for n, e in cfg.invalid.items() if n not in running}
    engine.recorder.write(engine.store.save_specs, tables)
    engine.consider_all(added)
    engine.planner.refresh_queue(anyway=True)
    return diff


def _update(engine, cfg, diff: dict) -> list:
    added, stored = [], None
    for name, spec in cfg.specs.items():
        job = engine.jobs.get(name)
        if job is None:
            stored = engine.store.load_states() if stored is None else stored
            added.append(engine.add_job(spec, stored.get(name)))
            diff["added"].append(name)
            continue
        job.problem = ""
        ineligible = engine.ineligible(spec)
        if job.spec != spec:
            placed = job.spec.scope != spec.scope
            job.spec = spec
            diff["changed"].append(name)
            engine.handle(job, lc.Reconfigure(restart=True, ineligible=ineligible, spec_enabled=spec.enabled))
            if placed:   # now a fleet job (its lease first), or no longer one (it may run here)
                why = engine.standby(spec)
                engine.handle(job, lc.LeaseLost(why=why) if why else lc.LeaseGranted())
        else:
            diff["unchanged"].append(name)
            if (ineligible, spec.enabled) != (job.life.ineligible, job.life.spec_enabled):
                engine.handle(job, lc.Reconfigure(ineligible=ineligible, spec_enabled=spec.enabled))
    return added


def changes(running: dict, cfg) -> dict:
    """What applying `cfg` would do to jobs running the tables `running` (name -> table):
    the names added, removed, changed (with the fields that differ) and unchanged, the
    running jobs whose new table is invalid (they keep their previous one), and the new
    names skipped for an invalid table. Pure: nothing is applied."""
    out = {"added": [], "removed": [], "changed": [], "unchanged": [], "fields": {}, "kept": {}, "skipped": {}}
    for name, table in cfg.tables.items():
        old = running.get(name)
        if old is None:
            out["added"].append(name)
        elif old == table:
            out["unchanged"].append(name)
        else:
            out["changed"].append(name)
            out["fields"][name] = sorted(key for key in old.keys() | table.keys()
                                         if old.get(key, _NONE) != table.get(key, _NONE))
    for name in running:
        if name not in cfg.tables and kept_by(name, cfg.invalid):
            out["kept"][name] = kept_by(name, cfg.invalid)
        elif name not in cfg.tables:
            out["removed"].append(name)
    out["skipped"] = {name: why for name, why in cfg.invalid.items() if name not in running}
    return out


_NONE = object()   # a field absent from a table
