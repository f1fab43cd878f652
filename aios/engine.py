"""The daemon: one thread, one selector loop, a timer heap; it wakes only on a timer, a
child exit (pidfd), a store change (inotify), a control request or a signal.

It carries out the decisions of `schedule`, the restart policy and backoff, spawns and
stops processes only through `supervisor`, and records every change in the store
through one door, `_set`. Its operations (start, stop, restart, enable, disable,
trigger, run_now, status) are plain methods that the control socket exposes.
Imports spec, schedule, config, store, supervisor, logs and loop.
"""
from __future__ import annotations

import os
import random
import signal
import sys
import time
from pathlib import Path

from . import launch, logs, schedule, supervisor
from .loop import Loop
from .exits import Exits
from .operations import Operations
from .spec import Event, JobSpec, JobState, JobType, Outcome, Run, Status, Trigger, replace
from .store import StoreError

WALL_RECHECK = 60.0     # wall-clock deadlines are re-checked at least this often (clock jumps)
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_NOT_ALWAYS_BUSY = (JobType.DAILY, JobType.INTERVAL, JobType.RANDOM_DAILY, JobType.TRIGGER)


class Active:
    """One running process of a job."""

    __slots__ = ("run", "proc", "trigger", "started", "stopping", "timers")

    def __init__(self, run: Run, proc, trigger: Trigger | None, started: float):
        self.run, self.proc, self.trigger, self.started = run, proc, trigger, started
        self.stopping: Outcome | None = None
        self.timers: list = []


class Job:
    """The engine's live view of one job."""

    __slots__ = ("spec", "state", "active", "timer", "intent", "owed", "retrying", "last_run")

    def __init__(self, spec: JobSpec, state: JobState, last_run: Run | None = None):
        self.spec, self.state, self.last_run = spec, state, last_run
        self.active: dict[int, Active] = {}   # by pid
        self.timer = None                     # the job's one pending wake-up
        self.intent: str | None = None        # after the running processes exit: restart|stop|disable|shutdown|remove|resume
        self.owed = 0                         # scheduled runs still owed (catch_up = "all")
        self.retrying = 0                     # retries waiting in backoff (trigger slots taken)


class Engine(Operations, Exits):
    def __init__(self, home: Path, *, force: bool = False):
        self.home = Path(home)
        self.force = force
        self.loop = Loop(on_error=self._on_callback_error)
        self.jobs: dict[str, Job] = {}
        self.pending: dict[str, int] = {}
        self.busy: set[int] = set()            # pids of running non-always, non-idle runs
        self.quiet_since = 0.0
        self.shutting_down = False
        self.stopped = False
        self.watchers: list = []               # callables notified with each Event
        self.waiters: dict[int, list] = {}     # trigger id -> callables given its result
        self.reexec_requested = False
        self.reexecuted = False                # this process was started by a re-exec
        self.started = 0.0                     # wall clock at start-up
        self.store = None                      # set by daemon.start, as are the following
        self.settings = None
        self.tables: dict[str, dict] = {}      # the aios.toml table of each job
        self.device = ""
        self.lock_fd = None
        self.log_guard = None
        self.control = None
        self.recorder = None                   # every store write goes through it (daemon.start)
        self.unclean = False                   # the last daemon died without a clean exit
        self.on_caught_up = None               # called once the store works again (daemon: re-read the queue)
        self.base_env: dict = {}               # the environment jobs start from (a snapshot)
        self.running = 0                       # processes of all jobs
        self._tz = None

    # ================================================================ lifecycle (daemon.serve runs the loop)
    def shutdown(self, why: str = "requested") -> None:
        """Stop every job gracefully, then leave the loop."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self._event("daemon_stopping", None, f"stopping all jobs ({why})")
        for job in self.jobs.values():
            self._cancel_timer(job)
            if job.active:
                self._stop_runs(job, Outcome.STOPPED, "shutdown")
            elif job.state.status not in (Status.DISABLED, Status.INELIGIBLE, Status.FAILED):
                self._set(job, Status.STOPPED, "daemon stopped", next_due=None)
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        if self.shutting_down and not self.running:
            self.stopped = True

    def on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self._reap_all()
        elif signum == signal.SIGHUP:
            if not self.shutting_down:
                self.request_reexec()
        elif self.shutting_down and signum == signal.SIGINT:
            self._kill_everything()
        else:
            self.shutdown(f"signal {signal.Signals(signum).name}")

    def _kill_everything(self) -> None:
        self._log("second interrupt: killing every job now")
        for job in self.jobs.values():
            for active in list(job.active.values()):
                supervisor.signal_group(active.proc, signal.SIGKILL)

    def _on_callback_error(self, exc: Exception) -> None:
        import traceback

        self._log("internal error (the daemon keeps running):\n" + "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())

    def _add_job(self, spec: JobSpec, stored: JobState | None, last_run: Run | None = None) -> Job:
        state = _fresh_state(stored or JobState(job=spec.name), self.loop.wall, keep_held=self.reexecuted)
        job = self.jobs[spec.name] = Job(spec, state, last_run)
        return job

    # ================================================================ deciding
    def _eligible(self, job: Job) -> bool:
        return set(job.spec.tags) <= self.settings.tags

    def _enabled(self, job: Job) -> bool:
        return job.spec.enabled if job.state.enabled is None else job.state.enabled

    def _consider(self, job: Job) -> None:
        """Bring the job to what it should be doing now; the one place that starts runs."""
        if self.shutting_down or job.intent or job.state.held:
            return
        if not self._eligible(job):
            missing = ", ".join(sorted(set(job.spec.tags) - self.settings.tags))
            self._set(job, Status.INELIGIBLE, f"tag missing on this device: {missing}", next_due=None)
            return
        if not self._enabled(job):
            self._set(job, Status.DISABLED, "disabled", next_due=None)
            return
        if job.state.status in (Status.BACKOFF, Status.FAILED) and job.timer is not None:
            return
        _CONSIDER[job.spec.type](self, job)

    def _consider_always(self, job: Job) -> None:
        if not job.active:
            self._launch(job)

    def _consider_scheduled(self, job: Job) -> None:
        if job.active or job.retrying:
            return
        if job.owed:
            job.owed -= 1
            self._launch(job, due=job.state.last_slot)
            return
        plan = schedule.plan(job.spec, job.state, schedule.Now(  # boot_id "": slot_boot is not stored yet (wall clock)
            wall=self._local_now(), boot=time.clock_gettime(time.CLOCK_BOOTTIME), boot_id=""), random.random())
        self._set(job, Status.WAITING, self._waiting_why(plan), last_slot=plan.last_slot,
                  next_due=plan.next_due, draw_day=plan.draw_day or job.state.draw_day,
                  draw_at=plan.draw_at if plan.draw_day else job.state.draw_at)
        if plan.missed:
            self._event("runs_missed", job.spec.name,
                        f"{plan.missed} run(s) missed; catch_up = {job.spec.catch_up!r}: running {plan.runs}")
        if plan.runs:
            job.owed = plan.runs - 1
            self._launch(job, due=plan.due)
        elif not self._dispatch_triggers(job):
            self._wake_at_wall(job, plan.next_due)

    def _waiting_why(self, plan: schedule.Plan) -> str:
        return "next run at " + self._clock_text(plan.next_due) if plan.next_due else "waiting"

    def _consider_trigger(self, job: Job) -> None:
        self._dispatch_triggers(job)
        if not job.active and not job.retrying:
            self._set(job, Status.WAITING, "waiting for a trigger", next_due=None)

    def _consider_idle(self, job: Job) -> None:
        if job.active or job.retrying:
            return
        quiet = None if self.busy else self.quiet_since
        due = schedule.idle_due(job.spec, job.state, quiet)
        if due is None:
            self._set(job, Status.WAITING, "waiting for other jobs to finish", next_due=None)
        elif due <= self.loop.wall:
            self._launch(job, due=due)
        elif not self._dispatch_triggers(job):
            self._set(job, Status.WAITING, "waiting for idleness", next_due=due)
            self._wake_at_wall(job, due)

    def _dispatch_triggers(self, job: Job) -> bool:
        """Start runs for queued triggers while the job has free slots; True if any started."""
        name, started = job.spec.name, False
        limit = job.spec.max_parallel if job.spec.type is JobType.TRIGGER else 1
        while self.pending.get(name) and len(job.active) + job.retrying < limit and not self.recorder.failing:
            try:
                trig = self.store.claim_trigger(name, self.loop.wall)
            except StoreError as exc:   # claimed once the store works again (_recovered)
                self.recorder.failed(exc)
                break
            if trig is None:
                self.pending[name] = 0
                break
            self.pending[name] -= 1
            self._launch(job, trigger=trig)
            started = True
        return started

    # ================================================================ running
    def _launch_now(self, job: Job) -> None:
        if job.spec.type is JobType.ALWAYS:
            self._launch(job)
        elif job.spec.type is JobType.TRIGGER:
            self._consider(job)
        else:
            self._launch(job, due=self.loop.wall)

    def _launch(self, job: Job, *, due: float | None = None, trigger: Trigger | None = None,
                attempt: int = 1) -> None:
        """Start one run of `job`: record it, spawn it, watch its exit. The run is committed
        before its process exists, so that a daemon killed in between leaves a record the
        next one can match (by the AIOS_RUN_ID in the process's environment); while the
        store fails, the run starts anyway and is recorded when the store is back."""
        spec = job.spec
        self._cancel_timer(job)
        if spec.type in _NOT_ALWAYS_BUSY and not self.busy:
            self._preempt_idle_jobs()
        run = self.recorder.start_run(Run(job=spec.name, started=self.loop.wall, device=self.device,
                                          attempt=attempt, trigger_id=trigger.id if trigger else None, due=due))
        try:
            proc = self._spawn(job, run, trigger)
        except OSError as exc:
            self._spawn_failed(job, run, trigger, exc)
            return
        active = Active(replace(run, pid=proc.pid, pid_start=proc.start_ticks), proc, trigger, self.loop.mono)
        if run.id is None:
            self.recorder.write(self.recorder.insert_run, active)
        else:   # the pid may wait for the end of the turn: AIOS_RUN_ID in its environment finds it too
            self.recorder.later(self.store.set_run_pid, run.id, proc.pid, proc.start_ticks)
        self._watch(job, active)
        self._set(job, Status.RUNNING, self._running_why(job, run), pid=proc.pid,
                  run_id=run.id, next_due=None if spec.type is JobType.ALWAYS else job.state.next_due)
        self._event("job_started", spec.name, f"pid {proc.pid}" + (f", attempt {attempt}" if attempt > 1 else "")
                    + (f", trigger {trigger.id}" if trigger else ""))

    def _running_why(self, job: Job, run: Run) -> str:
        if run.trigger_id is not None:
            return f"trigger {run.trigger_id}"
        return f"attempt {run.attempt}" if run.attempt > 1 else ""

    def _spawn(self, job: Job, run: Run, trigger: Trigger | None):
        spec = job.spec
        log_path = str(self.log_path(spec.name))
        logs.rotate_if_needed(log_path, self.settings.log_max_bytes, self.settings.log_keep)
        fd = logs.open_log(log_path)
        try:
            proc = supervisor.spawn(launch.argv(spec, trigger, self.home),
                                    launch.environment(spec, run.id, self.base_env, self.home, self.settings),
                                    launch.working_dir(spec, self.home), fd)
        finally:
            os.close(fd)
        if self.log_guard is not None:
            self.log_guard.arm(log_path)
        return proc

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def _spawn_failed(self, job: Job, run: Run, trigger: Trigger | None, exc: OSError) -> None:
        self._event("spawn_failed", job.spec.name, f"could not start: {exc}")
        active = Active(replace(run, ended=self.loop.wall), None, trigger, self.loop.mono)
        self._finish(job, active, Outcome.SPAWN_FAILED)

    def _watch(self, job: Job, active: Active) -> None:
        job.active[active.proc.pid] = active
        self.running += 1
        if job.spec.type in _NOT_ALWAYS_BUSY:
            self.busy.add(active.proc.pid)
        if active.proc.pidfd is not None:
            self.loop.add_reader(active.proc.pidfd, self._on_exit, job, active)
        if job.spec.timeout and job.spec.type is not JobType.ALWAYS:
            active.timers.append(self.loop.call_later(job.spec.timeout, self._on_timeout, job, active))

    def _on_timeout(self, job: Job, active: Active) -> None:
        self._event("timeout", job.spec.name, f"pid {active.proc.pid} ran past its timeout of "
                    f"{job.spec.timeout:g} s; stopping it")
        self._stop_active(job, active, Outcome.TIMEOUT)

    def _stop_runs(self, job: Job, outcome: Outcome, intent: str) -> None:
        job.intent = intent
        for active in list(job.active.values()):
            self._stop_active(job, active, outcome)
        self._set(job, Status.STOPPING, f"stopping ({intent})")

    def _stop_active(self, job: Job, active: Active, outcome: Outcome) -> None:
        """stop_signal to the process group; SIGKILL the group after stop_timeout."""
        if active.stopping is not None:
            return
        active.stopping = outcome
        supervisor.signal_group(active.proc, job.spec.stop_signal)
        active.timers.append(self.loop.call_later(job.spec.stop_timeout, self._kill, job, active))

    def _kill(self, job: Job, active: Active) -> None:
        self._event("stop_timeout", job.spec.name, f"pid {active.proc.pid} still running "
                    f"{job.spec.stop_timeout:g} s after the stop signal; sending SIGKILL to its group")
        supervisor.signal_group(active.proc, signal.SIGKILL)

    def _preempt_idle_jobs(self) -> None:
        for job in self.jobs.values():
            if job.spec.type is JobType.IDLE:
                for active in list(job.active.values()):
                    self._event("preempted", job.spec.name, "other work started; stopping the idle run")
                    self._stop_active(job, active, Outcome.PREEMPTED)

    # ================================================================ timers and clocks
    def _cancel_timer(self, job: Job) -> None:
        if job.timer is not None:
            job.timer.cancel()
            job.timer = None

    def _wake_at_wall(self, job: Job, due: float | None) -> None:
        """Wake the job at wall-clock `due`, re-checking at least every WALL_RECHECK seconds
        so that a changed clock or a suspended machine does not make it late."""
        self._cancel_timer(job)
        if due is None:
            return
        delay = min(max(0.0, due - self.loop.wall), WALL_RECHECK)
        job.timer = self.loop.call_later(delay, self._timer_launch, job)

    def _wall_of(self, mono: float) -> float:
        return self.loop.wall + (mono - self.loop.mono)

    def _local_now(self):
        from datetime import datetime

        if self._tz is None:
            from .config import local_zone

            self._tz = local_zone()
        return datetime.fromtimestamp(self.loop.wall, self._tz)

    def _clock_text(self, wall: float) -> str:
        from datetime import datetime

        moment = datetime.fromtimestamp(wall, self._local_now().tzinfo)
        fmt = "%H:%M:%S" if abs(wall - self.loop.wall) < 86400 else "%Y-%m-%d %H:%M"
        return moment.strftime(fmt)

    # ================================================================ the one door for state
    def _set(self, job: Job, status: Status, why: str, **fields) -> None:
        """Change a job's state: check the transition, stamp it, persist it, notify."""
        old = job.state
        if not old.status.can_become(status):
            raise AssertionError(f"job {job.spec.name!r}: {old.status.value} -> {status.value} is not allowed")
        if status is not old.status:
            fields["since"] = self.loop.wall
        if status in (Status.STOPPED, Status.WAITING, Status.BACKOFF, Status.FAILED,
                      Status.DISABLED, Status.INELIGIBLE) and not job.active:
            fields.setdefault("pid", None)
        new = replace(old, status=status, why=why, **fields)
        if new == old:
            return
        job.state = new
        self.recorder.save_state(new)
        if status is not old.status:
            self._notify(Event(ts=self.loop.wall, name="status", job=job.spec.name,
                               message=f"{old.status.value} -> {status.value}" + (f": {why}" if why else "")))

    def _recovered(self, written: int, dropped: int) -> None:
        """The store works again: say so, and pick up the triggers that waited meanwhile."""
        self._event("store_recovered", None, f"the state database works again; {written} delayed write(s) done"
                    + (f", {dropped} event(s) dropped" if dropped else ""))
        if self.on_caught_up is not None:
            self.on_caught_up()
        for job in list(self.jobs.values()):
            if self.pending.get(job.spec.name):
                self._consider(job)

    def _event(self, name: str, job: str | None, message: str) -> None:
        event = Event(ts=self.loop.wall, name=name, job=job, message=message, device=self.device)
        self._log(f"{name} {job or '-'}: {message}")
        self.recorder.event(event)
        self._notify(event)

    def _notify(self, event: Event) -> None:
        for watcher in list(self.watchers):
            watcher(event)

    def _log(self, message: str) -> None:
        import time

        try:
            sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):   # its own log on a full disk (or closed) must not stop the daemon
            pass


def _fresh_state(state: JobState, now: float, keep_held: bool) -> JobState:
    """What survives a daemon restart: counters, schedule memory, enable flags, a crash-loop
    verdict whose cool-down has not run out, and (across a re-exec only) a requested stop."""
    failed = state.status is Status.FAILED and (state.next_due or 0) > now
    return replace(state, status=Status.FAILED if failed else Status.STOPPED,
                   why=state.why if failed else "", pid=None, run_id=None,
                   next_due=state.next_due if failed else None, held=state.held and keep_held)


_CONSIDER = {
    JobType.ALWAYS: Engine._consider_always,
    JobType.DAILY: Engine._consider_scheduled,
    JobType.INTERVAL: Engine._consider_scheduled,
    JobType.RANDOM_DAILY: Engine._consider_scheduled,
    JobType.TRIGGER: Engine._consider_trigger,
    JobType.IDLE: Engine._consider_idle,
}
