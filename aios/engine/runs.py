"""Runs: a job's processes from spawn to reap, through the process layer the engine was
given. Starting one records the run before its process exists (a daemon killed in
between leaves a record the next one can match, by the AIOS_RUN_ID in the process's
environment), then spawns it, watches it (exit, timeout) and tells the engine what
happened (Spawned, SpawnFailed, Exited, TimedOut). Stopping sends the job's stop signal
to the process group, and SIGKILL after stop_timeout. Also owns idleness: which runs
keep the device busy, since when it is quiet, and preempting idle runs when work starts.
Part of the engine.
"""
from __future__ import annotations

import signal

from .. import launch, lifecycle as lc, show, supervisor
from ..spec import JobType, Outcome, Run, Trigger, replace

_BUSY = (JobType.DAILY, JobType.INTERVAL, JobType.RANDOM_DAILY, JobType.TRIGGER)


class Active:
    """One running process of a job, and the fate of its trigger once it ends."""

    __slots__ = ("run", "proc", "trigger", "started", "stopping", "timers", "fate")

    def __init__(self, run: Run, proc, trigger: Trigger | None, started: float):
        self.run, self.proc, self.trigger, self.started = run, proc, trigger, started
        self.stopping: Outcome | None = None
        self.timers: list = []
        self.fate: str | None = None

    @property
    def due(self) -> float | None:
        return self.run.due


class Runs:
    def __init__(self, engine):
        self.engine = engine
        self.running = 0                   # processes of all jobs
        self.busy: set[int] = set()        # keys of running daily, interval, random_daily and trigger runs
        self.quiet_since = engine.loop.boot     # boot clock

    # ================================================================ starting
    def start(self, job, action: lc.Spawn, ctx) -> None:
        """Start one run of `job` as the table asked; feed Spawned or SpawnFailed."""
        eng, spec = self.engine, job.spec
        trigger = ctx.trigger if ctx is not None and (action.trigger or action.retry) else None
        due = ctx.due if ctx is not None and action.retry else action.due
        if spec.type in _BUSY and not self.busy:
            self._preempt_idle_jobs()
        epoch = eng.fleet.epoch(spec.name) if eng.fleet is not None else None
        run = eng.recorder.start_run(Run(job=spec.name, started=eng.loop.wall, device=eng.device, epoch=epoch,
                                         attempt=action.attempt, trigger_id=trigger.id if trigger else None, due=due))
        token = launch.run_token(eng.secret, spec.name)
        try:
            plan = launch.plan(spec, trigger, run.id, eng.base_env, eng.home, eng.settings, token=token)
            if eng.fleet is not None:
                eng.fleet.spawning(job, plan.options["mark"])
            proc = eng.processes.spawn(plan.argv, plan.env, plan.cwd, str(eng.log_path(spec.name)), **plan.options)
        except OSError as exc:     # SpawnError: every way a process cannot be started
            if eng.fleet is not None:
                eng.fleet.ended(job, f"{launch.TOKEN_VAR}={token}".encode())
            return self._spawn_failed(job, run, trigger, str(exc))
        job.started = eng.processes.started(proc)
        active = Active(replace(run, pid=proc.pid, pid_start=proc.start_ticks), proc, trigger, eng.loop.boot)
        if run.id is None:
            eng.recorder.write(eng.recorder.insert_run, active)
        else:   # the pid may wait for the end of the turn: AIOS_RUN_ID in its environment finds it too
            eng.recorder.later(eng.store.set_run_pid, run.id, proc.pid, proc.start_ticks)
        self._watch(job, active)
        eng.update_state(job, pid=proc.pid, run_id=run.id)
        eng.handle(job, lc.Spawned(why=_running_why(run)))
        eng.event("job_started", spec.name, f"pid {proc.pid}" + (f", attempt {run.attempt}" if run.attempt > 1 else "")
                  + (f", trigger {trigger.id}" if trigger else ""))

    def _spawn_failed(self, job, run: Run, trigger: Trigger | None, why: str) -> None:
        eng = self.engine
        active = Active(replace(run, ended=eng.loop.wall, outcome=Outcome.SPAWN_FAILED), None, trigger, eng.loop.boot)
        eng.event("spawn_failed", job.name, why)
        job.last_run = active.run
        eng.handle(job, lc.SpawnFailed(why=why, due=run.due), ctx=active)
        eng.recorder.write(eng.recorder.end_run, active, False)

    def adopt(self, job, run: Run, proc, *, keep: bool, stale: bool) -> None:
        """Take back a process the last daemon (or this one before a re-exec) left running."""
        eng = self.engine
        started = eng.loop.boot - max(0.0, eng.loop.wall - run.started)
        trigger = Trigger(job=run.job, id=run.trigger_id) if run.trigger_id is not None else None
        active = Active(run, proc, trigger, started)
        self._watch(job, active)
        eng.update_state(job, pid=run.pid, run_id=run.id)
        eng.handle(job, lc.Adopted(keep=keep, stale=stale, reexec=eng.reexecuted, run=proc.pid))
        if keep:
            eng.event("job_adopted", job.name, f"pid {run.pid} adopted from the previous daemon")

    def _watch(self, job, active: Active) -> None:
        job.runs[active.proc.pid] = active
        self.running += 1
        if job.spec.type in _BUSY:
            self.busy.add(active.proc.pid)
        self.engine.processes.watch(active.proc, self.on_exit, job, active)
        if job.spec.timeout and job.spec.type is not JobType.ALWAYS:
            active.timers.append(self.engine.loop.call_later(job.spec.timeout, self._timed_out, job, active))
        if self.engine.fleet is not None and job.spec.scope == "fleet":
            self.engine.fleet.watching(job, active)

    def _timed_out(self, job, active: Active) -> None:
        self.engine.event("timeout", job.name, f"pid {active.proc.pid} ran past its timeout of "
                          f"{job.spec.timeout:g} s; stopping it")
        self.engine.handle(job, lc.TimedOut(run=active.proc.pid))

    # ================================================================ ending
    def reap_all(self) -> None:
        """SIGCHLD where there are no pidfds: look at every process we run (with pidfds,
        each exit wakes its own reader)."""
        if supervisor.HAS_PIDFD:
            return
        for job in list(self.engine.jobs.values()):
            for active in list(job.runs.values()):
                self.on_exit(job, active)

    def on_exit(self, job, active: Active) -> None:
        eng = self.engine
        status = eng.processes.reap(active.proc)
        if status is None or job.runs.get(active.proc.pid) is not active:
            return
        del job.runs[active.proc.pid]
        self.running -= 1
        if eng.fleet is not None:
            eng.fleet.ended(job, active.proc.mark, active.proc.pid)
        for timer in active.timers:
            timer.cancel()
        code, sig = status
        outcome = _outcome(active, code, sig)
        if outcome is Outcome.KILLED and eng.processes.oom_killed(active.proc):
            outcome = Outcome.OOM
        run = active.run = replace(active.run, ended=eng.loop.wall, exit_code=code, signal=sig, outcome=outcome)
        uptime = eng.loop.boot - active.started
        text = f"{describe_exit(code, sig)} after {show.duration(uptime)}"
        job.last_run = run
        eng.event("job_exited", job.name, f"pid {run.pid} {text} ({outcome.value})")
        eng.handle(job, lc.Exited(outcome=outcome, uptime=uptime, text=text, exit_code=code, attempt=run.attempt,
                                  trigger=active.trigger is not None, due=run.due, started=run.started), ctx=active)
        if outcome is Outcome.OK:
            eng.links.succeeded(job)     # before the end is recorded, as the hooks the table fired
        self._record_end(active)
        self._busy_ended(active.proc.pid)
        eng.maybe_finished()

    def _record_end(self, active: Active) -> None:
        eng, run = self.engine, active.run
        finished = active.fate == "finish" and run.trigger_id is not None
        then = (lambda: eng.trigger_finished(run.trigger_id, run.outcome.value, active.run)) if finished else None
        eng.recorder.write(eng.recorder.end_run, active, finished, then=then)
        if finished:
            eng.event("trigger_done", run.job, f"trigger {run.trigger_id}: {run.outcome.value}"
                      + (f" after {run.attempt} attempts" if run.attempt > 1 else ""))

    # ================================================================ stopping
    def stop_all(self, job, outcome: Outcome) -> None:
        for active in list(job.runs.values()):
            self._stop(job, active, outcome)

    def stop(self, job, key: int, outcome: Outcome) -> None:
        if key in job.runs:
            self._stop(job, job.runs[key], outcome)

    def _stop(self, job, active: Active, outcome: Outcome) -> None:
        """stop_signal to the process group; SIGKILL the group after stop_timeout."""
        if active.stopping is not None:
            return
        active.stopping = outcome
        self.engine.processes.signal(active.proc, job.spec.stop_signal)
        active.timers.append(self.engine.loop.call_later(job.spec.stop_timeout, self._kill, job, active))

    def _kill(self, job, active: Active) -> None:
        self.engine.event("stop_timeout", job.name, f"pid {active.proc.pid} still running "
                          f"{job.spec.stop_timeout:g} s after the stop signal; sending SIGKILL to its group")
        self.engine.processes.signal(active.proc, signal.SIGKILL)

    def kill_by(self, job, deadline: float) -> None:
        """SIGKILL the job's process groups at boot-clock `deadline` if they still run (a
        lost lease: the copy must be gone before the lease can expire)."""
        for active in list(job.runs.values()):
            active.timers.append(self.engine.loop.call_at(
                deadline, self.engine.processes.signal, active.proc, signal.SIGKILL))

    def kill_everything(self) -> None:
        for job in self.engine.jobs.values():
            for active in list(job.runs.values()):
                self.engine.processes.signal(active.proc, signal.SIGKILL)

    # ================================================================ idleness
    def _preempt_idle_jobs(self) -> None:
        for job in list(self.engine.jobs.values()):
            if job.spec.type is JobType.IDLE and job.runs:
                self.engine.handle(job, lc.Preempt())

    def _busy_ended(self, key: int) -> None:
        if key not in self.busy:
            return
        self.busy.discard(key)
        if not self.busy:
            self.quiet_since = self.engine.loop.boot
            self.engine.consider_all([job for job in self.engine.jobs.values() if job.spec.type is JobType.IDLE])


def _outcome(active: Active, code: int | None, sig: int | None) -> Outcome:
    if active.stopping is not None:
        return active.stopping
    if code is None and sig is None:
        return Outcome.UNKNOWN
    if code == 0:
        return Outcome.OK
    return Outcome.KILLED if sig is not None else Outcome.FAILED


def _running_why(run: Run) -> str:
    if run.trigger_id is not None:
        return f"trigger {run.trigger_id}"
    return f"attempt {run.attempt}" if run.attempt > 1 else ""


def describe_exit(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return "exited (status unknown)" if code is None else f"exited {code}"
