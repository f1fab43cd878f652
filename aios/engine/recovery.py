"""Adoption: taking back, after a daemon restart or re-exec, the job processes the last
daemon left running, or recording that they ended meanwhile. Never a second copy, and
never somebody else's process: a recorded run's process is matched by pid and start
time, a uid jobs run as, and the run token that only this home's secret can make
(launch.run_token); after a crash, /proc is also searched for job processes of this home
that no record names, held to the same checks. An always job whose configuration changed
while no daemon ran is restarted on its new spec. Part of the engine.
"""
from __future__ import annotations

import os

from .. import launch
from ..spec import Outcome, Run, SpecError, replace

TOKEN = launch.TOKEN_VAR


def adopt_leftovers(engine, previous_tables: dict, unclean: bool) -> None:
    """Runs the previous daemon recorded as started but never saw end: adopt the process if
    it is still the same one (pid and start time), else record the run as lost. Triggers
    whose runs were not adopted go back to the queue (at least once)."""
    uids = _uids(engine)
    strays = _strays(engine, uids) if unclean else {}
    kept, runs = set(), engine.store.open_runs()
    known = {str(run.id) for run in runs}
    for run in runs:
        if run.pid is None and str(run.id) in strays:
            pid, ticks, _ = strays[str(run.id)]
            run = replace(run, pid=pid, pid_start=ticks)
            engine.recorder.write(engine.store.set_run_pid, run.id, pid, ticks)
        proc = _adopt_process(engine, run.job, run.pid, run.pid_start, uids) if run.pid and run.pid_start else None
        job = engine.jobs.get(run.job)
        if proc is None or job is None:
            _lost(engine, run, proc)
            continue
        _take(engine, job, run, proc, previous_tables)
        if run.trigger_id is not None:
            kept.add(run.trigger_id)
    for run_id, (pid, ticks, name) in strays.items():
        if run_id not in known and not (run_id.isdigit() and engine.store.get_run(int(run_id))):
            _adopt_unrecorded(engine, name, pid, ticks, previous_tables, uids)
    engine.recorder.write(_release_claims, engine, kept)


def _uids(engine) -> set:
    """Whom job processes run as: the daemon's user, and each job's configured user."""
    uids = {os.getuid()}
    for job in engine.jobs.values():
        try:
            who = launch.identity(job.spec)
        except SpecError:   # the user is gone: nothing of its can be adopted
            continue
        if who is not None:
            uids.add(who.uid)
    return uids


def _adopt_process(engine, job: str, pid: int, ticks: int, uids):
    """The process, if it still is the run's: its start time, one of our uids, and the
    run token only this home's secret makes (runs of a daemon that gave no tokens, with
    a secret made just now, are taken on the first two)."""
    token = engine.processes.environ(pid, TOKEN)
    if token is None and not engine.secret_is_new:
        return None
    if token is not None and not launch.token_matches(engine.secret, job, token):
        return None
    return engine.processes.adopt(pid, ticks, uids, None if token is None else f"{TOKEN}={token}")


def _take(engine, job, run: Run, proc, previous_tables: dict) -> None:
    stale = previous_tables.get(job.name, engine.tables.get(job.name)) != engine.tables.get(job.name)
    if not job.spec.adopt:
        engine.event("adopt_refused", job.name, f"pid {run.pid} left running; adopt = false: stopping it")
    elif stale:
        engine.event("adopt_stale", job.name, f"pid {run.pid} runs a previous configuration of the job")
    if engine.fleet is not None and job.spec.scope == "fleet" and not stale:
        engine.fleet.resume(job, run)   # its lease renewed: it runs on; else it stops (lost lease)
    engine.runs.adopt(job, run, proc, keep=job.spec.adopt, stale=stale)


def _release_claims(engine, kept: set) -> None:
    released = engine.store.release_claims(keep=kept)
    if released:
        engine.event("triggers_requeued", None, f"{released} trigger(s) cut short by the last daemon queued again")


def _strays(engine, uids) -> dict[str, tuple[int, int, str]]:
    """AIOS_RUN_ID -> (pid, start ticks, job) of the live job processes of this home and
    device that run as one of `uids` and carry a valid run token (process-group leaders
    only: a job's own children are not copies of it)."""
    marks = {"AIOS_HOME": str(engine.home), "AIOS_DEVICE_ID": engine.device}
    found: dict = {}
    leaders = engine.processes.leaders(marks, ("AIOS_JOB", "AIOS_RUN_ID", TOKEN), uids)
    for leader in sorted(leaders, key=lambda leader: leader.ticks):
        env, pid = leader.env, leader.pid
        job, run_id = env.get("AIOS_JOB"), env.get("AIOS_RUN_ID", "")
        if job is None or pid == os.getpid() or not launch.token_matches(engine.secret, job, env.get(TOKEN)):
            continue   # the oldest process of a run is its own
        found.setdefault(run_id if run_id.isdigit() else f"pid {pid}", (pid, leader.ticks, job))
    return found


def _adopt_unrecorded(engine, name: str, pid: int, ticks: int, previous_tables: dict, uids) -> None:
    """A job process no run records (its record was never written): adopt it as a new run,
    or stop it if its job is gone from the configuration."""
    proc = _adopt_process(engine, name, pid, ticks, uids)
    job = engine.jobs.get(name)
    if proc is None:
        return
    if job is None or pid in job.runs:
        if job is None:
            import signal

            engine.processes.signal(proc, signal.SIGTERM)
        engine.processes.close(proc)
        return
    run = engine.recorder.start_run(Run(job=name, started=engine.loop.wall, device=engine.device, pid=pid,
                                        pid_start=ticks))
    engine.event("run_unrecorded", name, f"pid {pid} was running with no record of its run; adopting it")
    _take(engine, job, run, proc, previous_tables)
    if run.id is None:
        engine.recorder.write(engine.recorder.insert_run, job.runs[pid])


def _lost(engine, run: Run, proc) -> None:
    if proc is not None:  # still running but its job is gone from the configuration
        import signal

        engine.processes.signal(proc, signal.SIGTERM)
        engine.processes.close(proc)
    engine.recorder.write(engine.store.finish_run, replace(run, ended=engine.loop.wall, outcome=Outcome.LOST))
    engine.event("run_lost", run.job, f"run {run.id} (pid {run.pid}) ended while no daemon watched it")
