"""Adoption: taking back, after a daemon restart or re-exec, the job processes the last
daemon left running, or recording that they ended meanwhile. Never a second copy: a
process is matched by pid and start time, or by the AIOS_RUN_ID in its environment.
Part of the engine.
"""
from __future__ import annotations

import os
import signal

from . import supervisor
from .engine import Active, Engine, Job
from .spec import Outcome, Run, Status, Trigger, replace


def adopt_leftovers(engine: Engine) -> None:
    """Runs the previous daemon recorded as started but never saw end: adopt the process if
    it is still the same one (pid and start time), else record the run as lost. Triggers
    whose runs were not adopted go back to the queue (at least once).

    After a daemon died without a clean exit, /proc is also searched for job processes of
    this home that no record names (killed between a spawn and the record of its pid, or
    while the store was failing): a run whose pid was never written is matched by the
    AIOS_RUN_ID its process carries, and a process of no recorded run is adopted as a new
    run. Either way the job is not started a second time beside it."""
    strays = _strays(engine) if engine.unclean else {}
    kept, runs = set(), engine.store.open_runs()
    known = {str(run.id) for run in runs}
    for run in runs:
        job = engine.jobs.get(run.job)
        if run.pid is None and str(run.id) in strays:
            pid, ticks, _ = strays[str(run.id)]
            run = replace(run, pid=pid, pid_start=ticks)
            engine.recorder.write(engine.store.set_run_pid, run.id, pid, ticks)
        proc = supervisor.adopt(run.pid, run.pid_start) if run.pid and run.pid_start else None
        if proc is None or job is None:
            _lost(engine, run, proc)
            continue
        _adopt(engine, job, run, proc)
        if run.trigger_id is not None:
            kept.add(run.trigger_id)
    for run_id, (pid, ticks, name) in strays.items():
        if run_id not in known and not (run_id.isdigit() and engine.store.get_run(int(run_id))):
            _adopt_unrecorded(engine, name, pid, ticks)
    engine.recorder.write(_release_claims, engine, kept)


def _release_claims(engine: Engine, kept: set) -> None:
    released = engine.store.release_claims(keep=kept)
    if released:
        engine._event("triggers_requeued", None, f"{released} trigger(s) cut short by the last daemon queued again")


def _strays(engine: Engine) -> dict[str, tuple[int, int, str]]:
    """AIOS_RUN_ID -> (pid, start ticks, job) of the live job processes of this home and
    device (process-group leaders only: a job's own children are not copies of it)."""
    marks = {"AIOS_HOME": str(engine.home), "AIOS_DEVICE_ID": engine.device}
    found: dict = {}
    for pid, ticks, env in sorted(supervisor.find_leaders(marks, ("AIOS_JOB", "AIOS_RUN_ID")),
                                  key=lambda leader: leader[1]):
        run_id = env.get("AIOS_RUN_ID", "")
        if "AIOS_JOB" in env and pid != os.getpid():   # the oldest process of a run is its own
            found.setdefault(run_id if run_id.isdigit() else f"pid {pid}", (pid, ticks, env["AIOS_JOB"]))
    return found


def _adopt_unrecorded(engine: Engine, name: str, pid: int, ticks: int) -> None:
    """A job process no run records (its record was never written): adopt it as a new run,
    or stop it if its job is gone from the configuration."""
    proc = supervisor.adopt(pid, ticks)
    job = engine.jobs.get(name)
    if proc is None:
        return
    if job is None or pid in job.active:
        if job is None:
            supervisor.signal_group(proc, signal.SIGTERM)
        supervisor.close(proc)
        return
    run = Run(job=name, started=engine.loop.wall, device=engine.device, pid=pid, pid_start=ticks)
    run = engine.recorder.start_run(run)
    engine._event("run_unrecorded", name, f"pid {pid} was running with no record of its run; adopting it")
    _adopt(engine, job, run, proc)
    if run.id is None:
        engine.recorder.write(engine.recorder.insert_run, job.active[pid])


def _lost(engine: Engine, run, proc) -> None:
    if proc is not None:  # still running but its job is gone from the configuration
        supervisor.signal_group(proc, signal.SIGTERM)
        supervisor.close(proc)
    engine.recorder.write(engine.store.finish_run, replace(run, ended=engine.loop.wall, outcome=Outcome.LOST))
    engine._event("run_lost", run.job, f"run {run.id} (pid {run.pid}) ended while no daemon watched it")


def _adopt(engine: Engine, job: Job, run, proc) -> None:
    active = Active(run, proc, None, engine.loop.mono - max(0.0, engine.loop.wall - run.started))
    if run.trigger_id is not None:
        active.trigger = Trigger(job=run.job, id=run.trigger_id)
    engine._watch(job, active)
    if not job.spec.adopt:
        engine._event("adopt_refused", job.spec.name, f"pid {run.pid} left running; adopt = false: stopping it")
        engine._set(job, Status.RUNNING, "left by the previous daemon", pid=run.pid, run_id=run.id)
        engine._stop_runs(job, Outcome.STOPPED, "resume")
        return
    engine._set(job, Status.RUNNING, "" if engine.reexecuted else "adopted after a daemon crash",
                pid=run.pid, run_id=run.id)
    engine._event("job_adopted", job.spec.name, f"pid {run.pid} adopted from the previous daemon")
