"""The engine: the daemon's one object, composed of parts that own one concern each.

`Engine.handle(job, event)` is the one door for a job's state: it asks the lifecycle
table for the job's next life, persists it, announces a status change, and carries out
the table's actions, feeding each action's result back in as an event (spawned or not,
claimed or not, what is due). Its parts talk to it and to each other through public
methods:

    runs      Runs        starting, watching, stopping and ending processes; idleness
    planner   Planner     what is due: schedule.plan, idleness, the trigger queue
    recorder  Recorder    every store write, batched per loop turn; persist, then announce
    ops       Operations  what a user may ask: the control protocol's handlers
    links     Links       the triggers a run makes for other jobs: hooks, `after`

The engine gets its loop (and through it the clocks), its store and its process layer
from the caller: daemon.py wires the real ones, tests/engine the fakes. Inside the
engine only the loop reads clocks. Imports lifecycle, spec and the engine's parts.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from .. import launch, lifecycle as lc
from ..spec import Event, JobSpec, JobState, Run, Status, Trigger, plain, replace
from .loop import Loop
from .fleet import Fleet
from .links import Links
from .operations import Operations
from .planner import Planner
from .recorder import Recorder
from .runs import Runs

WALL_RECHECK = 60.0     # a wait for a wall-clock moment is re-planned at least this often (clock steps)


class Job:
    """The engine's live view of one job: its spec, its persisted state, its life (as the
    lifecycle table sees it), its running processes by key, and its one wake-up timer."""

    __slots__ = ("spec", "state", "life", "runs", "timer", "last_run", "problem", "started")

    def __init__(self, spec: JobSpec, state: JobState, life: lc.Life, last_run: Run | None = None):
        self.spec, self.state, self.life, self.last_run = spec, state, life, last_run
        self.runs: dict = {}          # key (pid) -> runs.Active
        self.timer = None
        self.problem = ""             # a config error that left the job on its previous spec
        self.started = None           # how its last run started: ("zygote" | "spawn", why not the zygote)

    @property
    def name(self) -> str:
        return self.spec.name


class Context:
    """What an event is about when it is not a running process: a claimed trigger, or a
    failed run waiting for its retry (its trigger and slot)."""

    __slots__ = ("trigger", "due", "fate")

    def __init__(self, trigger: Trigger | None = None, due: float | None = None):
        self.trigger, self.due, self.fate = trigger, due, None


class Engine:
    def __init__(self, *, home: Path, settings, store, processes, loop: Loop | None = None,
                 reexecuted: bool = False, log=None):
        self.home, self.settings, self.store, self.processes = Path(home), settings, store, processes
        self.device = settings.device_id
        self.loop = loop or Loop(on_error=self.internal_error)
        self.loop.on_error = self.internal_error
        self.reexecuted = reexecuted
        self.log = log or _stderr_log
        self.jobs: dict[str, Job] = {}
        self.tables: dict[str, dict] = {}      # each job's aios.toml table
        self.invalid: dict[str, str] = {}      # job name -> why its table is invalid
        self.orphans: dict[str, int] = {}      # pending triggers of jobs the configuration lacks
        self.watchers: list = []               # callables given each announced Event
        self.waiters: dict[int, list] = {}     # trigger id -> callables given its result
        self.shutting_down = self.stopped = self.reexec_requested = False
        self.started = self.loop.wall
        self.secret = os.urandom(32)           # the home's secret for run tokens (daemon.py keeps it in the store)
        self.secret_is_new = True              # made now: runs of the last daemon carry no token of it
        self.containment = "process group"     # how a job's processes are kept together (daemon.py)
        self.base_env: dict = {}               # the environment jobs start from (daemon.py)
        self.jobs_nofile = -1                  # the soft RLIMIT_NOFILE jobs get (the daemon raised its own)
        self.control = None
        self.recorder = Recorder(store, self.loop, self.log, self._recovered)
        self.runs = Runs(self)
        self.planner = Planner(self)
        self.ops = Operations(self)
        self.fleet = Fleet(self) if store.fleet else None   # fleet mode: a shared PostgreSQL
        self.links = Links(self)

    # ================================================================ jobs
    def add_job(self, spec: JobSpec, stored: JobState | None, last_run: Run | None = None) -> Job:
        state = _fresh_state(stored or JobState(job=spec.name), self.loop.wall, keep_held=self.reexecuted)
        life = lc.Life(status=state.status, why=state.why, attempts=state.attempts, restarts=state.restarts,
                       held=state.held, enabled=state.enabled, spec_enabled=spec.enabled,
                       ineligible=self.ineligible(spec), standby=self.standby(spec), next_due=state.next_due)
        job = self.jobs[spec.name] = Job(spec, state, life, last_run)
        self.recorder.save_state(state)   # no stale "running" with the pid of a process that is gone
        if state.status is Status.FAILED and state.next_due:   # a crash-loop verdict survives a restart
            job.life = replace(life, waking=True)
            self.wake(job, lc.Wake(boot=self.loop.boot + max(0.0, state.next_due - self.loop.wall)))
        return job

    def standby(self, spec: JobSpec) -> str:
        """Why a job may not run yet in fleet mode: a fleet job without its lease."""
        return "waiting for its lease" if self.fleet is not None and spec.scope == "fleet" else ""

    def ineligible(self, spec: JobSpec) -> str:
        missing = set(spec.tags) - self.settings.tags
        return f"tag missing on this device: {', '.join(sorted(missing))}" if missing else ""

    # ================================================================ the one door
    def handle(self, job: Job, event, ctx=None) -> None:
        """Feed `event` to the lifecycle table and carry out its answer."""
        if self.jobs.get(job.name) is not job:
            return      # forgotten meanwhile (removed from the configuration)
        moment = lc.Moment(boot=self.loop.boot, wall=self.loop.wall, u=random.random())
        result = lc.step(job.spec, job.life, event, moment)
        self._set_life(job, result.life)
        for action in result.actions:
            self._carry_out(job, action, ctx)

    def _set_life(self, job: Job, life: lc.Life) -> None:
        old, job.life = job.life, life
        changes = {"status": life.status, "why": life.why, "attempts": life.attempts, "restarts": life.restarts,
                   "held": life.held, "enabled": life.enabled, "next_due": life.next_due}
        if life.status is not job.state.status:
            changes["since"] = self.loop.wall
        if not job.runs:
            changes["pid"] = None
        self.update_state(job, **changes)
        if life.status is not old.status:
            self.event("status", job.name, f"{old.status.value} -> {life.status.value}"
                       + (f": {life.why}" if life.why else ""))

    def update_state(self, job: Job, **changes) -> None:
        """Change persisted fields of a job's state (facts the engine observed)."""
        new = replace(job.state, **changes)
        if new != job.state:
            job.state = new
            self.recorder.save_state(new)

    def _carry_out(self, job: Job, action, ctx) -> None:
        kind = type(action)
        if kind is lc.Spawn:
            self.runs.start(job, action, ctx)
        elif kind is lc.Claim:
            self.planner.claim(job)
        elif kind is lc.Plan:
            self.planner.plan(job)
        elif kind is lc.StopRuns:
            self.runs.stop_all(job, action.outcome)
        elif kind is lc.StopRun:
            self.runs.stop(job, action.run, action.outcome)
        elif kind is lc.Wake:
            self.wake(job, action)
        elif kind is lc.CancelWake:
            self.cancel_wake(job)
        elif kind is lc.Announce:
            self.event(action.name, job.name, action.message)
        else:
            self._carry_out_bookkeeping(job, action, ctx)

    def _carry_out_bookkeeping(self, job: Job, action, ctx) -> None:
        kind = type(action)
        if kind is lc.RetryLater:
            retry = Context(ctx.trigger if ctx else None, ctx.due if ctx else None)
            self.loop.call_at(action.at, self._retry_due, job, retry, action.attempt)
        elif kind is lc.TriggerFate:
            if action.fate == "requeue":
                self.requeue(job, ctx.trigger if ctx else None)
            elif ctx is not None:
                ctx.fate = action.fate
        elif kind is lc.RequeueRetry:
            self.requeue(job, ctx.trigger if ctx else None)
        elif kind is lc.RememberRun:
            self.planner.remember_idle_run(job, action.slot)
        elif kind is lc.Hook:
            self.links.fire(job, action, ctx)
        elif kind is lc.Forget:
            self.cancel_wake(job)
            del self.jobs[job.name]

    def requeue(self, job: Job, trigger: Trigger | None) -> None:
        """A claimed trigger goes back to the queue (its run never happened or was cut short)."""
        if trigger is None or trigger.id is None:
            return
        self.recorder.write(self.store.requeue_trigger, trigger.id)
        self.handle(job, lc.Queued(count=1, added=True))

    def _retry_due(self, job: Job, retry: Context, attempt: int) -> None:
        self.handle(job, lc.RetryDue(attempt=attempt), ctx=retry)

    # ================================================================ wake-ups
    def wake(self, job: Job, action: lc.Wake) -> None:
        """Feed Woke at the boot-clock moment, or look again at a wall-clock moment at
        least every WALL_RECHECK seconds (the wall clock may be stepped meanwhile)."""
        self.cancel_wake(job)
        if action.boot is not None:
            job.timer = self.loop.call_at(action.boot, self._woke, job)
        elif action.wall is not None:
            delay = min(max(0.0, action.wall - self.loop.wall), WALL_RECHECK)
            job.timer = self.loop.call_later(delay, self._woke, job)

    def cancel_wake(self, job: Job) -> None:
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None

    def _woke(self, job: Job) -> None:
        job.timer = None
        self.handle(job, lc.Woke())

    # ================================================================ the daemon's own life
    def consider_all(self, jobs=None) -> None:
        for job in list(self.jobs.values()) if jobs is None else jobs:
            self.handle(job, lc.Consider())

    def shutdown(self, why: str = "requested") -> None:
        """Stop every job gracefully, then leave the loop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self.event("daemon_stopping", None, f"stopping all jobs ({why})")
        for job in list(self.jobs.values()):
            self.handle(job, lc.Shutdown())
        self.maybe_finished()

    def maybe_finished(self) -> None:
        if self.shutting_down and not self.runs.running:
            self.stopped = True

    def request_reexec(self) -> None:
        self.reexec_requested = self.stopped = True
        if self.control is not None:
            self.control.pause()  # new connections wait in the backlog for the new image

    def on_signal(self, signum: int) -> None:
        import signal

        if signum == signal.SIGCHLD:
            self.runs.reap_all()
            self.processes.reap_orphans({pid for job in self.jobs.values() for pid in job.runs})
        elif signum == signal.SIGHUP:
            if not self.shutting_down:
                self.request_reexec()
        elif self.shutting_down and signum == signal.SIGINT:
            self.log("second interrupt: killing every job now")
            self.runs.kill_everything()
        else:
            self.shutdown(f"signal {signal.Signals(signum).name}")

    def internal_error(self, exc: Exception) -> None:
        import traceback

        self.log("internal error (the daemon keeps running):\n" + "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())

    def _recovered(self, written: int, dropped: int) -> None:
        """The store works again: say so, and pick up the triggers that waited meanwhile."""
        self.event("store_recovered", None, f"the state database works again; {written} delayed write(s) done"
                   + (f", {dropped} event(s) dropped" if dropped else ""))
        self.planner.refresh_queue(anyway=True)

    # ================================================================ events: persisted, then announced
    def event(self, name: str, job: str | None, message: str) -> None:
        """Record an event with the state it announces; watchers hear it once it is stored."""
        data = self.describe(self.jobs[job]) if job in self.jobs else None
        event = Event(ts=self.loop.wall, name=name, job=job, message=message, device=self.device, data=data)
        self.log(f"{name} {job or '-'}: {message}")
        self.recorder.event(event, self._announce)

    def _announce(self, event: Event) -> None:
        for watcher in list(self.watchers):
            watcher(event)

    def trigger_finished(self, trigger_id: int, outcome: str, run: Run | None) -> None:
        """Tell every client waiting on the trigger how it ended (once that is stored)."""
        for reply in self.waiters.pop(trigger_id, []):
            reply(trigger_result(trigger_id, outcome, run))

    def describe(self, job: Job, log_tail: bool = False) -> dict:
        """A job's status as the protocol shows it; with log_tail (a status request, never
        an event), a failed or backing-off job's last stderr lines as "log_tail"."""
        state, spec, life = job.state, job.spec, job.life
        started = [active.started for active in job.runs.values()]
        why = state.why + (f" ({job.problem})" if job.problem else "")
        status = {
            "name": spec.name, "type": spec.type.value, "status": state.status.value,
            "why": why, "since": state.since, "pid": state.pid, "pids": sorted(job.runs),
            "uptime": self.loop.boot - min(started) if started else None, "restarts": state.restarts,
            "attempts": state.attempts, "next_due": state.next_due, "tags": list(spec.tags),
            "enabled": life.is_enabled, "held": state.held, "queued": life.queued,
            "last_run": plain(job.last_run) if job.last_run else None, "problem": job.problem or None,
            "started": job.started[0] if job.started else None, "start_note": job.started[1] if job.started else None,
            "root_warning": launch.root_warning(spec),
        }
        if log_tail and state.status in (Status.FAILED, Status.BACKOFF):
            from ..logs import last_words

            status["log_tail"] = last_words(str(self.log_path(spec.name)))    # the last 8 KiB, at most
        return status

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"


def trigger_result(trigger_id: int, outcome: str | None, run: Run | None) -> dict:
    return {"trigger": trigger_id, "outcome": outcome, "run_id": run.id if run else None,
            "exit_code": run.exit_code if run else None, "signal": run.signal if run else None}


def _fresh_state(state: JobState, now: float, keep_held: bool) -> JobState:
    """What survives a daemon restart: counters, schedule memory, enable flags, a crash-loop
    verdict whose cool-down has not run out, and (across a re-exec only) a requested stop."""
    failed = state.status is Status.FAILED and (state.next_due or 0) > now
    return replace(state, status=Status.FAILED if failed else Status.STOPPED,
                   why=state.why if failed else "", pid=None, run_id=None,
                   next_due=state.next_due if failed else None, held=state.held and keep_held)


def _stderr_log(message: str) -> None:
    import time

    try:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):   # its own log on a full disk (or closed) must not stop the daemon
        pass
