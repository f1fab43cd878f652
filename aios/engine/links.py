"""Links: the triggers one job's runs make for other jobs.

A Hook action of the lifecycle table (on_failure, on_success) becomes a trigger of the job
the hook names, with the run's facts under launch.HOOK_KEY; a run that ended ok becomes a
trigger of each job whose `after` list is now satisfied (jobset.after_ready), marked with
launch.AFTER_KEY, unless one such trigger already waits. Each trigger is written to the
store (durable) while the run's end is being handled, before that end is recorded: a run
whose end is on disk has its triggers on disk. Part of the engine.
"""
from __future__ import annotations

from .. import jobset, launch, lifecycle as lc
from ..store import StoreError

PENDING_LOOK = 1000     # queued triggers of a job looked through for an `after` one already waiting


class Links:
    def __init__(self, engine):
        self.engine = engine

    def fire(self, job, hook: lc.Hook, ctx) -> None:
        """Queue the hook's job with the facts of the run (ctx: the run that ended)."""
        run = getattr(ctx, "run", None)
        facts = {"kind": hook.kind, "job": job.name, "outcome": hook.outcome.value, "exit_code": hook.exit_code,
                 "run_id": run.id if run is not None else None, "why": hook.why[:launch.MAX_FACT]}
        self._queue(getattr(job.spec, hook.kind), {launch.HOOK_KEY: facts},
                    f"{hook.kind} of {job.name} ({hook.outcome.value})")

    def succeeded(self, job) -> None:
        """A run of `job` ended ok: queue every job whose `after` list that satisfies."""
        for other in list(self.engine.jobs.values()):
            if job.name in other.spec.after_jobs and self._ready(other) and not self._waiting(other):
                self._queue(other.name, {launch.AFTER_KEY: list(other.spec.after_jobs)},
                            f"after = {list(other.spec.after_jobs)} (last: {job.name} ok)")

    def _ready(self, job) -> bool:
        jobs = self.engine.jobs
        latest = {name: _finished(jobs[name]) if name in jobs else None for name in job.spec.after_jobs}
        starts = [active.run.started for active in job.runs.values()]
        if job.last_run is not None:
            starts.append(job.last_run.started)
        return jobset.after_ready(job.spec, latest, max(starts, default=None))

    def _waiting(self, job) -> bool:
        try:
            pending = self.engine.store.pending_triggers(job.name, PENDING_LOOK)
        except StoreError:      # not known: queue it (at worst a second run follows)
            return False
        return any(launch.AFTER_KEY in trigger.kwargs for trigger in pending)

    def _queue(self, target: str, kwargs: dict, why: str) -> None:
        """Write the trigger now (or once the store works again), then tell its job."""
        eng, added = self.engine, []

        def add() -> None:
            added.append(eng.store.add_trigger(target, [], kwargs, eng.loop.wall).id)

        def queued() -> None:
            eng.event("trigger_added", target if target in eng.jobs else None,
                      f"trigger {added[0]} of {target!r} queued by {why}")
            if target in eng.jobs:
                eng.handle(eng.jobs[target], lc.Queued(count=1, added=True))

        eng.recorder.write(add, then=queued)


def _finished(job):
    """The job's latest finished run, or None."""
    run = job.last_run
    return run if run is not None and run.ended is not None else None
