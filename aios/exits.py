"""What happens when a run ends: record it, decide with `schedule` (restart now, back
off, give up, retry, done), and act. A mixin of Engine, like Operations: one object,
split by responsibility. Part of the engine.
"""
from __future__ import annotations

import random
import signal

from . import schedule, show, supervisor
from .spec import JobType, Outcome, Run, Status, Trigger, replace


class Exits:
    def _reap_all(self) -> None:
        """SIGCHLD fallback (no pidfds): look at every process we run."""
        for job in list(self.jobs.values()):
            for active in list(job.active.values()):
                self._on_exit(job, active)

    def _on_exit(self, job, active) -> None:
        pidfd = active.proc.pidfd
        if pidfd is not None:
            self.loop.remove_reader(pidfd)      # while it is open: reap closes it
        status = supervisor.reap(active.proc)
        if status is None:
            if pidfd is not None:
                self.loop.add_reader(pidfd, self._on_exit, job, active)
            return
        del job.active[active.proc.pid]
        self.running -= 1
        active.run = replace(active.run, ended=self.loop.wall, exit_code=status[0], signal=status[1])
        self._finish(job, active, self._outcome(active, *status))
        self._maybe_finished()

    def _outcome(self, active, code: int | None, sig: int | None) -> Outcome:
        if active.stopping is not None:
            return active.stopping
        if code is None and sig is None:
            return Outcome.UNKNOWN
        if code == 0:
            return Outcome.OK
        return Outcome.KILLED if sig is not None else Outcome.FAILED

    def _finish(self, job, active, outcome: Outcome) -> None:
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
        self.recorder.write(self.recorder.end_run, active, fate == "finish",
                           then=(lambda: self._answer_waiters(active.run)) if fate == "finish" else None)
        if fate == "requeue":
            self.recorder.write(self.store.requeue_trigger, run.trigger_id)
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

    def _answer_waiters(self, run: Run) -> None:
        """Tell every client waiting on the run's trigger how it ended (once it is committed)."""
        for reply in self.waiters.pop(run.trigger_id, []):
            reply(self._trigger_result(run.trigger_id, run.outcome.value, run))

    def _trigger_fate(self, job, outcome: Outcome, decision) -> str:
        """A trigger cut short by shutdown or restart goes back to the queue; one that will
        be retried stays claimed; any other is done."""
        if outcome is Outcome.STOPPED and job.intent in ("shutdown", "restart"):
            return "requeue"
        return "keep" if isinstance(decision, schedule.Retry) else "finish"

    def _fulfil_intent(self, job) -> None:
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

    def _after_always(self, job, active, uptime: float) -> None:
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

    def _restart_after(self, job, decision: schedule.Restart, exit_text: str) -> None:
        restarts = job.state.restarts + 1
        if decision.at <= self.loop.mono:
            self._set(job, job.state.status, job.state.why, attempts=decision.attempts, restarts=restarts)
            self._launch(job)
            return
        self._set(job, Status.BACKOFF, f"{exit_text}; {decision.why}", pid=None,
                  attempts=decision.attempts, restarts=restarts, next_due=self._wall_of(decision.at))
        self._event("restart_scheduled", job.spec.name, job.state.why)
        job.timer = self.loop.call_at(decision.at, self._timer_launch, job)

    def _probe(self, job) -> None:
        job.timer = None
        self._event("job_probe", job.spec.name, "cool-down over; starting the failed job again")
        self._consider(job)

    def _timer_launch(self, job) -> None:
        job.timer = None
        self._consider(job)

    def _after_other(self, job, active, outcome: Outcome, decision) -> None:
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

    def _retry(self, job, run: Run, trig: Trigger | None, attempt: int) -> None:
        job.retrying -= 1
        if self.shutting_down or job.state.held or not self._enabled(job):
            if trig is not None:
                self.recorder.write(self.store.requeue_trigger, trig.id)
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


def describe_exit(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return "exited (status unknown)" if code is None else f"exited {code}"
