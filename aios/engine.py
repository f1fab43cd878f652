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
from collections import deque
from pathlib import Path

from . import launch, logs, schedule, show, supervisor
from .loop import Loop
from .operations import Operations
from .spec import Event, JobSpec, JobState, JobType, Outcome, Run, Status, Trigger, replace
from .store import StoreError

WALL_RECHECK = 60.0     # wall-clock deadlines are re-checked at least this often (clock jumps)
STORE_RETRY = 1.0       # while the store fails, the waiting writes are retried this often
MAX_BACKLOG = 10_000    # writes waiting for the store beyond which new events are dropped (counted)
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


class Engine(Operations):
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
        self.unclean = False                   # the last daemon died without a clean exit
        self.on_caught_up = None               # called once the store works again (daemon: re-read the queue)
        self._store_failing = False
        self._unsaved: dict[str, JobState] = {}     # job states waiting to be written
        self._backlog: deque = deque()              # (fn, args): other writes waiting, in order
        self._retry_timer = None
        self._written_late = self._dropped_events = 0
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
        if self.shutting_down and not any(job.active for job in self.jobs.values()):
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
        plan = schedule.plan(job.spec, job.state, self._local_now(), random.random())
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
        while self.pending.get(name) and len(job.active) + job.retrying < limit and not self._store_failing:
            try:
                trig = self.store.claim_trigger(name, self.loop.wall)
            except StoreError as exc:   # claimed once the store works again (_caught_up)
                self._store_failed(exc)
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
        run = self._record_start(Run(job=spec.name, started=self.loop.wall, device=self.device, attempt=attempt,
                                     trigger_id=trigger.id if trigger else None, due=due))
        try:
            proc = self._spawn(job, run, trigger)
        except OSError as exc:
            self._spawn_failed(job, run, trigger, exc)
            return
        active = Active(replace(run, pid=proc.pid, pid_start=proc.start_ticks), proc, trigger, self.loop.mono)
        if run.id is None:
            self._write(self._insert_run, active)
        else:
            self._write(self.store.set_run_pid, run.id, proc.pid, proc.start_ticks)
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
                                    launch.environment(spec, run.id, os.environ, self.home, self.settings),
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

    # ================================================================ exits
    def _reap_all(self) -> None:
        """SIGCHLD fallback (no pidfds): look at every process we run."""
        for job in list(self.jobs.values()):
            for active in list(job.active.values()):
                self._on_exit(job, active)

    def _on_exit(self, job: Job, active: Active) -> None:
        pidfd = active.proc.pidfd
        status = supervisor.reap(active.proc)  # closes the pidfd once it reports the exit
        if status is None:
            return
        if pidfd is not None:
            self.loop.remove_reader(pidfd)
        del job.active[active.proc.pid]
        active.run = replace(active.run, ended=self.loop.wall, exit_code=status[0], signal=status[1])
        self._finish(job, active, self._outcome(active, *status))
        self._maybe_finished()

    def _outcome(self, active: Active, code: int | None, sig: int | None) -> Outcome:
        if active.stopping is not None:
            return active.stopping
        if code is None and sig is None:
            return Outcome.UNKNOWN
        if code == 0:
            return Outcome.OK
        return Outcome.KILLED if sig is not None else Outcome.FAILED

    def _finish(self, job: Job, active: Active, outcome: Outcome) -> None:
        """Record an ended run and decide what the job does next."""
        for timer in active.timers:
            timer.cancel()
        run = active.run = replace(active.run, outcome=outcome)
        decision = None
        if job.intent is None and not self.shutting_down and job.spec.type is not JobType.ALWAYS:
            decision = schedule.after_run(job.spec, run.attempt, outcome, self.loop.mono, random.random())
        fate = self._trigger_fate(job, outcome, decision) if active.trigger else None
        uptime = self.loop.mono - active.started
        job.last_run = run
        self._write(self._record_end, active, fate == "finish")
        if fate == "finish":
            for reply in self.waiters.pop(run.trigger_id, []):
                reply(self._trigger_result(run.trigger_id, outcome.value, run))
        if fate == "requeue":
            self._write(self.store.requeue_trigger, run.trigger_id)
            self.pending[job.spec.name] = self.pending.get(job.spec.name, 0) + 1
        self._event("job_exited", job.spec.name, f"pid {run.pid} {describe_exit(run.exit_code, run.signal)}"
                    f" after {show.duration(uptime)} ({outcome.value})")
        if job.intent is not None:
            if not job.active:
                self._fulfil_intent(job)
        elif job.spec.type is JobType.ALWAYS:
            self._after_always(job, active, uptime)
        else:
            self._after_other(job, active, outcome, decision)
        self._after_busy_change(run.pid)

    def _trigger_fate(self, job: Job, outcome: Outcome, decision) -> str:
        """A trigger cut short by shutdown or restart goes back to the queue; one that will
        be retried stays claimed; any other is done."""
        if outcome is Outcome.STOPPED and job.intent in ("shutdown", "restart"):
            return "requeue"
        return "keep" if isinstance(decision, schedule.Retry) else "finish"

    def _fulfil_intent(self, job: Job) -> None:
        intent, job.intent = job.intent, None
        if intent == "restart":
            self._set(job, Status.STOPPED, "restarting on request", attempts=0)
            self._launch_now(job)
        elif intent == "resume":  # a leftover that could not be adopted is gone
            self._set(job, Status.STOPPED, "replaced a process left by the previous daemon")
            self._consider(job)
        elif intent == "remove":
            self._set(job, Status.STOPPED, "removed from the configuration", pid=None, next_due=None)
            del self.jobs[job.spec.name]
        elif intent == "disable":
            self._set(job, Status.DISABLED, "disabled", pid=None, next_due=None)
        else:
            why = "stopped on request" if intent == "stop" else "daemon stopped"
            self._set(job, Status.STOPPED, why, pid=None, next_due=None)

    def _after_always(self, job: Job, active: Active, uptime: float) -> None:
        run, spec = active.run, job.spec
        decision = schedule.after_exit(spec, job.state.attempts, uptime, run.exit_code,
                                       self.loop.mono, random.random())
        exit_text = f"{describe_exit(run.exit_code, run.signal)} after {show.duration(uptime)}"
        if isinstance(decision, schedule.Done):
            self._set(job, Status.STOPPED, f"{exit_text}; {decision.why}", pid=None)
        elif isinstance(decision, schedule.GiveUp):
            self._set(job, Status.FAILED, f"{decision.why} (last: {exit_text}); probing again at "
                      + self._clock_text(self._wall_of(decision.at)), pid=None, attempts=decision.attempts,
                      next_due=self._wall_of(decision.at))
            self._event("job_failed", spec.name, job.state.why)
            job.timer = self.loop.call_at(decision.at, self._probe, job)
        else:
            self._restart_after(job, decision, exit_text)

    def _restart_after(self, job: Job, decision: schedule.Restart, exit_text: str) -> None:
        restarts = job.state.restarts + 1
        if decision.at <= self.loop.mono:
            self._set(job, job.state.status, job.state.why, attempts=decision.attempts, restarts=restarts)
            self._launch(job)
            return
        self._set(job, Status.BACKOFF, f"{exit_text}; {decision.why}", pid=None,
                  attempts=decision.attempts, restarts=restarts, next_due=self._wall_of(decision.at))
        self._event("restart_scheduled", job.spec.name, job.state.why)
        job.timer = self.loop.call_at(decision.at, self._timer_launch, job)

    def _probe(self, job: Job) -> None:
        job.timer = None
        self._event("job_probe", job.spec.name, "cool-down over; starting the failed job again")
        self._consider(job)

    def _timer_launch(self, job: Job) -> None:
        job.timer = None
        self._consider(job)

    def _after_other(self, job: Job, active: Active, outcome: Outcome, decision) -> None:
        run, spec = active.run, job.spec
        if isinstance(decision, schedule.Retry):
            job.retrying += 1
            why = f"{outcome.value}; {decision.why}"
            if not job.active:
                self._set(job, Status.BACKOFF, why, attempts=run.attempt, next_due=self._wall_of(decision.at))
            self._event("retry_scheduled", spec.name, why)
            self.loop.call_at(decision.at, self._retry, job, run, active.trigger, decision.attempt)
            return
        if spec.type is JobType.IDLE and outcome is not Outcome.PREEMPTED:
            self._set(job, job.state.status, job.state.why, last_slot=run.due or run.started)
        if run.trigger_id is not None:
            self._event("trigger_done", spec.name, f"trigger {run.trigger_id}: {decision.why}")
        if not job.active:
            self._set(job, Status.WAITING, f"last run: {decision.why}", pid=None, attempts=0)
        self._consider(job)

    def _retry(self, job: Job, run: Run, trig: Trigger | None, attempt: int) -> None:
        job.retrying -= 1
        if self.shutting_down or job.state.held or not self._enabled(job):
            if trig is not None:
                self._write(self.store.requeue_trigger, trig.id)
            return
        self._launch(job, due=run.due, trigger=trig, attempt=attempt)

    def _after_busy_change(self, pid: int) -> None:
        if pid not in self.busy:
            return
        self.busy.discard(pid)
        if not self.busy:
            self.quiet_since = self.loop.wall
            for job in self.jobs.values():
                if job.spec.type is JobType.IDLE:
                    self._consider(job)

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
        self._save(new)
        if status is not old.status:
            self._notify(Event(ts=self.loop.wall, name="status", job=job.spec.name,
                               message=f"{old.status.value} -> {status.value}" + (f": {why}" if why else "")))

    def _save(self, state: JobState) -> None:
        self._unsaved[state.job] = state   # the latest state of each job: written now, or once the store is back
        if not self._store_failing:
            try:
                self._write_states()
            except StoreError as exc:
                self._store_failed(exc)

    def _write_states(self) -> None:
        if self._unsaved:
            with self.store.batch():
                for state in self._unsaved.values():
                    self.store.save_state(state)
            self._unsaved.clear()

    # ================================================================ writes while the store fails
    # The daemon keeps supervising when its database is full, locked or broken: a write
    # that fails waits in memory (runs, trigger outcomes and events in order in _backlog,
    # the latest state of each job in _unsaved), the error is reported once, and every
    # STORE_RETRY seconds the waiting writes are tried again, in order, until they pass.
    # Meanwhile nothing is written out of order and no trigger is claimed; a trigger is
    # acknowledged only once add_trigger committed it (Operations.trigger).

    def _write(self, fn, *args) -> None:
        """Do one store write now, or queue it behind the writes already waiting."""
        if not self._store_failing:
            try:
                fn(*args)
                return
            except StoreError as exc:
                self._store_failed(exc)
        self._backlog.append((fn, args))

    def _record_start(self, run: Run) -> Run:
        """The run with its id, recorded now; without an id while the store fails (the
        caller queues _insert_run or _record_end, which record it later)."""
        if not self._store_failing:
            try:
                return self.store.start_run(run)
            except StoreError as exc:
                self._store_failed(exc)
        return run

    def _insert_run(self, active: Active) -> None:
        if active.run.id is None:
            active.run = self.store.start_run(active.run)

    def _record_end(self, active: Active, finish_trigger: bool) -> None:
        self._insert_run(active)
        self.store.finish_run(active.run, finish_trigger=finish_trigger)

    def _store_failed(self, exc: Exception) -> None:
        """Report the first failure of an outage (once), and retry until the store is back."""
        if not self._store_failing:
            self._store_failing = True
            self._log(f"store_error: {exc}; jobs keep running and their records wait in memory "
                      f"(retried every {STORE_RETRY:g} s)")
            self._backlog.append((self.store.add_event, (Event(
                ts=self.loop.wall, name="store_error", message=str(exc), device=self.device),)))
        if self._retry_timer is None:
            self._retry_timer = self.loop.call_later(STORE_RETRY, self._retry_writes)

    def _retry_writes(self) -> None:
        self._retry_timer = None
        if self.flush_writes():
            self._caught_up()
        else:
            self._retry_timer = self.loop.call_later(STORE_RETRY, self._retry_writes)

    def flush_writes(self) -> bool:
        """Write what is waiting, in order; False if the store still fails."""
        done = 0
        try:
            while self._backlog:
                fn, args = self._backlog[0]
                try:
                    fn(*args)
                except StoreError:
                    raise
                except Exception as exc:  # a bug, not the store: report it, do not retry it forever
                    self._on_callback_error(exc)
                self._backlog.popleft()
                done += 1
            self._write_states()
        except StoreError:
            return False
        finally:
            self._written_late += done
        return True

    def _caught_up(self) -> None:
        written, self._written_late = self._written_late, 0
        dropped, self._dropped_events = self._dropped_events, 0
        self._store_failing = False
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
        if len(self._backlog) < MAX_BACKLOG:
            self._write(self.store.add_event, event)
        else:
            self._dropped_events += 1
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


def describe_exit(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return "exited (status unknown)" if code is None else f"exited {code}"


_CONSIDER = {
    JobType.ALWAYS: Engine._consider_always,
    JobType.DAILY: Engine._consider_scheduled,
    JobType.INTERVAL: Engine._consider_scheduled,
    JobType.RANDOM_DAILY: Engine._consider_scheduled,
    JobType.TRIGGER: Engine._consider_trigger,
    JobType.IDLE: Engine._consider_idle,
}
