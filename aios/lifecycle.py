"""What a job does next: one total table, `step(spec, life, event, moment)` ->
`Step(life=life, actions=actions)`. Pure: no clock, no I/O; time and the random draw come in `moment`.

`Life` is everything about a job that decides its next move: its visible status and
why, what it intends once its processes are gone (`Intent`), its counters and flags,
and how many processes, retries and queued triggers it has. Events are closed: the
requests a user or the configuration makes, and the facts the engine observes. Every
(life, event) pair has an answer, even if the answer is "ignore" (an empty Step).
The engine feeds every request and fact in, and carries out the actions that come back,
feeding the result of each (spawned or not, claimed or not, what is due) in again as an
event. No other code decides a transition: tests/test_lifecycle.py drives random event
sequences through this table and checks its invariants, and docs/states.md is
generated from it (`aios help states`).

Imports spec and schedule (whose pure rules say when a restart or retry is due).
"""
from __future__ import annotations

from enum import Enum

from . import schedule
from .spec import JobSpec, JobType, Outcome, Status, record, replace

__all__ = ["Intent", "Life", "Moment", "Step", "step", "EVENTS", "SPAWN_FAILURES"]

# Consecutive spawn failures of a non-always job before it is marked failed (always
# jobs count them with their quick exits, up to `retries`).
SPAWN_FAILURES = 5


class Intent(str, Enum):
    """What a job does once its running processes have exited."""

    NONE = "none"
    STOP = "stop"            # stay stopped (held) until started
    RESTART = "restart"      # start again at once
    DISABLE = "disable"
    REMOVE = "remove"        # forget the job: it left the configuration
    SHUTDOWN = "shutdown"    # the daemon is stopping
    REPLACE = "replace"      # a leftover of the last daemon that may not be adopted (adopt = false)
    RECONFIGURE = "reconfigure"  # its configuration no longer lets it run here (disabled, tags)


@record
class Life:
    status: Status = Status.STOPPED
    why: str = ""
    intent: Intent = Intent.NONE
    attempts: int = 0          # always: consecutive quick failures; others: consecutive spawn failures
    restarts: int = 0          # automatic restarts of an always job
    held: bool = False         # stopped on request: never started again on its own
    enabled: bool | None = None    # the runtime override (None: follow the spec)
    spec_enabled: bool = True
    ineligible: str = ""       # why the job does not run on this device ("" if it does)
    standby: str = ""          # a fleet job without its lease here: why it stands by ("" if it may run)
    down: bool = False         # the daemon is shutting down
    active: int = 0            # processes running
    retrying: int = 0          # failed runs waiting for their retry
    queued: int = 0            # triggers waiting in the store
    owed: int = 0              # catch-up runs still owed (catch_up = "all")
    owed_due: float | None = None
    waking: bool = False       # a wake-up (backoff, probe or schedule) is pending
    spawn_after: float | None = None   # boot clock: no spawn before this, a spawn failed
    next_due: float | None = None  # wall clock, shown to people

    @property
    def is_enabled(self) -> bool:
        return self.spec_enabled if self.enabled is None else self.enabled


@record
class Moment:
    """When an event happens: the boot clock (timers) and the wall clock (shown times), and
    a uniform draw in [0, 1) for jitter."""

    boot: float
    wall: float
    u: float = 0.5

    def wall_of(self, boot: float) -> float:
        return self.wall + (boot - self.boot)


# ================================================================ events

@record
class Start:
    """Start a stopped, backing-off or failed job (clears a crash-loop verdict)."""


@record
class Stop:
    """Stop the job's processes; it stays stopped until started."""


@record
class Restart:
    """Stop the job's processes and start it again at once."""


@record
class Enable:
    """Persistently enable the job."""


@record
class Disable:
    """Persistently disable the job, stopping its processes."""


@record
class RunNow:
    """Run a scheduled or idle job once now (the engine refuses it while one runs)."""


@record
class Shutdown:
    """The daemon is stopping: stop every process, start nothing more."""


@record
class Remove:
    """The job left the configuration: stop its processes, then forget it."""


@record
class Reconfigure:
    """The job's spec changed (or was checked again): `restart` when a running always job
    must take the new spec; `ineligible` and `spec_enabled` as the new spec says."""

    restart: bool = False
    ineligible: str = ""
    spec_enabled: bool = True


@record
class Consider:
    """Look again at what the job should be doing now (start-up, idleness changed, the
    store works again)."""


@record
class Woke:
    """The job's own wake-up (backoff over, cool-down over, scheduled time)."""


@record
class Planned:
    """What is due for a scheduled or idle job, as `schedule` says: start `runs` runs
    (for slot `due`), then wait until `next_wall` (or `next_boot` on the boot clock)."""

    runs: int = 0
    due: float | None = None
    next_wall: float | None = None
    next_boot: float | None = None
    why: str = ""
    missed: str = ""           # a note on missed runs, announced as runs_missed


@record
class Queued:
    """`count` triggers of this job wait in the store (`added`: on top of those known)."""

    count: int
    added: bool = False


@record
class Claimed:
    """The result of a Claim: a trigger was claimed (the engine holds it for the Spawn),
    or none was there, or the store could not be asked (`failing`)."""

    found: bool
    failing: bool = False


@record
class Spawned:
    """A process of the job started."""

    why: str = ""              # e.g. "trigger 12", "attempt 2"


@record
class SpawnFailed:
    """A process of the job could not be started; `why` says what failed, `due` is the
    slot it was for (a scheduled slot is owed again, not lost)."""

    why: str
    due: float | None = None


@record
class Exited:
    """A process of the job ended after `uptime` seconds."""

    outcome: Outcome
    uptime: float
    text: str = ""             # "exited 3 after 0.2 s"
    exit_code: int | None = None
    attempt: int = 1
    trigger: bool = False      # it ran a trigger
    due: float | None = None   # the slot it ran for
    started: float = 0.0       # wall clock


@record
class RetryDue:
    """The backoff of a failed run is over: run attempt `attempt` (of the same trigger)."""

    attempt: int


@record
class Adopted:
    """A process the last daemon left running was taken back. `keep`: adopt = true;
    `stale`: an always job's spec changed since the process started (it restarts on the
    new one); `reexec`: the daemon re-executed itself (nothing happened to the job)."""

    keep: bool = True
    stale: bool = False
    reexec: bool = False
    run: int = 0               # the engine's key of the run


@record
class LeaseGranted:
    """This device holds the lease of the (fleet) job: it may run it here."""


@record
class LeaseLost:
    """This device does not hold (or can no longer renew) the lease of the fleet job:
    stop its processes at once (fencing) and stand by; `why` says where it runs."""

    why: str


@record
class Preempt:
    """Other work started: an idle job's runs stop."""


@record
class TimedOut:
    """A run of the job passed its `timeout`."""

    run: int                   # the engine's key of the run


EVENTS = (Start, Stop, Restart, Enable, Disable, RunNow, Shutdown, Remove, Reconfigure, Consider,
          Woke, Planned, Queued, Claimed, Spawned, SpawnFailed, Exited, RetryDue, Adopted, LeaseGranted,
          LeaseLost, Preempt, TimedOut)


# ================================================================ actions

@record
class Spawn:
    """Start one process: for slot `due`, as attempt `attempt`, with the claimed trigger
    (`trigger`) or the one a retry kept (`retry`)."""

    due: float | None = None
    attempt: int = 1
    trigger: bool = False
    retry: bool = False


@record
class Claim:
    """Claim the oldest queued trigger of the job; answer with Claimed."""


@record
class Plan:
    """Ask `schedule` what is due now; answer with Planned."""


@record
class StopRuns:
    """Send every process of the job its stop signal (SIGKILL after stop_timeout)."""

    outcome: Outcome


@record
class StopRun:
    run: int
    outcome: Outcome


@record
class Wake:
    """Feed Woke at boot-clock `boot`, or at wall-clock `wall` (re-checked against clock steps)."""

    boot: float | None = None
    wall: float | None = None


@record
class CancelWake:
    pass


@record
class RetryLater:
    """Feed RetryDue(attempt) at boot-clock `at`; the engine keeps the run's trigger and slot."""

    at: float
    attempt: int


@record
class TriggerFate:
    """What becomes of the trigger of the run that just ended: "finish" (done, with the
    run's outcome), "requeue" (back to the queue: it was cut short or never started) or
    "keep" (claimed, for its retry)."""

    fate: str


@record
class RequeueRetry:
    """A retry that will not run (stopped, disabled, shutdown): its trigger goes back."""


@record
class RememberRun:
    """An idle job's run that was not preempted: no other run within its cooldown."""

    slot: float


@record
class Announce:
    name: str
    message: str


@record
class Forget:
    """Remove the job from the engine."""


@record
class Hook:
    """Trigger the job named by the spec's `kind` ("on_failure": a run failed after its
    last attempt, or the job entered failed; "on_success": a run ended ok), with the facts
    of the run (the engine adds the job's name and the run's id)."""

    kind: str
    outcome: Outcome
    exit_code: int | None = None
    why: str = ""


@record
class Step:
    life: Life
    actions: tuple = ()


# ================================================================ the table

_FAILURES = (Outcome.FAILED, Outcome.KILLED, Outcome.TIMEOUT, Outcome.OOM)

def step(spec: JobSpec, life: Life, event, moment: Moment) -> Step:
    """The job's next state and what to do, for any life and any event."""
    return _HANDLERS[type(event)](spec, life, event, moment)


def _runnable(life: Life) -> bool:
    return (not life.held and life.is_enabled and not life.ineligible and not life.standby and not life.down
            and life.intent is Intent.NONE)


def _holding(life: Life, moment: Moment) -> bool:
    """A spawn failed a moment ago, or the job backs off: start nothing new yet."""
    return ((life.waking and life.status in (Status.BACKOFF, Status.FAILED))
            or (life.spawn_after is not None and moment.boot < life.spawn_after))


def _consider(spec: JobSpec, life: Life, moment: Moment, actions: tuple = ()) -> Step:
    """Bring the job to what it should be doing now: the one place that starts runs on
    the job's own account."""
    if life.down or life.intent is not Intent.NONE or life.held:
        return Step(life=life, actions=actions)
    if (life.ineligible or not life.is_enabled or life.standby) and life.active:
        return Step(life=life, actions=actions)   # its processes are being stopped
    if life.ineligible:
        return Step(life=_status(life, Status.INELIGIBLE, life.ineligible, next_due=None),
                    actions=actions + (CancelWake(),))
    if not life.is_enabled:
        return Step(life=_status(life, Status.DISABLED, "disabled", next_due=None), actions=actions + (CancelWake(),))
    if life.standby:
        return Step(life=_status(life, Status.STANDBY, life.standby, next_due=None), actions=actions + (CancelWake(),))
    if _holding(life, moment):
        return Step(life=life, actions=actions)
    if spec.type is JobType.ALWAYS:
        return Step(life=life, actions=actions + ((Spawn(),) if not life.active else ()))
    if spec.type is JobType.TRIGGER:
        return _dispatch_triggers(spec, life, actions)
    if life.active or life.retrying:
        return Step(life=life, actions=actions)
    if life.owed:
        return Step(life=replace(life, owed=life.owed - 1), actions=actions + (Spawn(due=life.owed_due),))
    return Step(life=life, actions=actions + (Plan(),))


def _dispatch_triggers(spec: JobSpec, life: Life, actions: tuple) -> Step:
    limit = spec.max_parallel if spec.type is JobType.TRIGGER else 1
    free = max(0, limit - life.active - life.retrying)
    claims = (Claim(),) * min(free, life.queued)
    if not claims and not life.active and not life.retrying and spec.type is JobType.TRIGGER:
        return Step(life=_status(life, Status.WAITING, "waiting for a trigger", next_due=None), actions=actions)
    return Step(life=life, actions=actions + claims)


def _status(life: Life, status: Status, why: str, **changes) -> Life:
    return replace(life, status=status, why=why, **changes)


def _hook(spec: JobSpec, kind: str, outcome: Outcome, exit_code: int | None, why: str) -> tuple:
    """Hook(...) if the spec names a job for `kind`, else nothing."""
    return (Hook(kind=kind, outcome=outcome, exit_code=exit_code, why=why),) if getattr(spec, kind) else ()


def _final_hook(spec: JobSpec, event: Exited, why: str) -> tuple:
    """The hook of a run that ended for good: on_success if ok, on_failure if it failed
    (exited non-zero, killed, timed out, out of memory); none if stopped or preempted."""
    if event.outcome is Outcome.OK:
        return _hook(spec, "on_success", event.outcome, event.exit_code, why)
    if event.outcome in _FAILURES:
        return _hook(spec, "on_failure", event.outcome, event.exit_code, why)
    return ()


# ---------------------------------------------------------------- requests

def _on_start(spec, life, event, moment) -> Step:
    life = replace(life, held=False)
    actions = ()
    if life.status in (Status.FAILED, Status.BACKOFF) and not life.active:
        life = _status(life, Status.STOPPED, "starting on request", attempts=0, waking=False, next_due=None)
        actions = (CancelWake(),)
    return _consider(spec, life, moment, actions)


def _on_stop(spec, life, event, moment) -> Step:
    return _halt(replace(life, held=True), Intent.STOP, Status.STOPPED, "stopped on request")


def _on_disable(spec, life, event, moment) -> Step:
    return _halt(replace(life, enabled=False), Intent.DISABLE, Status.DISABLED, "disabled")


def _on_shutdown(spec, life, event, moment) -> Step:
    life = replace(life, down=True)
    if life.active:
        return _stop_processes(life, Intent.SHUTDOWN, Outcome.STOPPED)
    if life.status in (Status.DISABLED, Status.INELIGIBLE, Status.FAILED):
        return Step(life=replace(life, waking=False), actions=(CancelWake(),))
    return Step(life=_status(life, Status.STOPPED, "daemon stopped", next_due=None, waking=False),
                actions=(CancelWake(),))


def _on_remove(spec, life, event, moment) -> Step:
    if life.active:
        return _stop_processes(life, Intent.REMOVE, Outcome.STOPPED)
    return Step(life=_status(life, Status.STOPPED, "removed from the configuration", next_due=None, waking=False),
                actions=(CancelWake(), Forget()))


def _halt(life: Life, intent: Intent, status: Status, why: str) -> Step:
    """Stop the processes (`intent` is fulfilled when they are gone), or take `status` now."""
    if life.down:
        return Step(life=life)
    if life.active:
        if life.intent in (Intent.REMOVE, Intent.SHUTDOWN):
            return Step(life=life)
        return _stop_processes(life, intent, Outcome.STOPPED)
    return Step(life=_status(life, status, why, next_due=None, waking=False, owed=0), actions=(CancelWake(),))


def _stop_processes(life: Life, intent: Intent, outcome: Outcome) -> Step:
    return Step(life=_status(life, Status.STOPPING, f"stopping ({intent.value})", intent=intent, waking=False),
                actions=(CancelWake(), StopRuns(outcome=outcome)))


def _on_restart(spec, life, event, moment) -> Step:
    if life.down or life.intent in (Intent.REMOVE, Intent.SHUTDOWN):
        return Step(life=life)
    life = replace(life, held=False)
    if not life.is_enabled or life.ineligible:
        return _consider(spec, life, moment)
    if life.active:
        return _stop_processes(life, Intent.RESTART, Outcome.STOPPED)
    return _start_again(spec, _status(life, life.status, life.why, attempts=0, waking=False), moment, (CancelWake(),))


def _start_again(spec, life: Life, moment: Moment, actions: tuple) -> Step:
    """Launch at once as a restart asks: an always job runs, a trigger job takes its
    queue, any other job runs once now."""
    if spec.type in (JobType.ALWAYS, JobType.TRIGGER) or life.retrying or not _runnable(life):
        return _consider(spec, life, moment, actions)
    return Step(life=life, actions=actions + (Spawn(due=moment.wall),))


def _on_enable(spec, life, event, moment) -> Step:
    life = replace(life, enabled=True)
    if life.status is Status.DISABLED:
        life = _status(life, Status.STOPPED, "enabled")
    return _consider(spec, life, moment)


def _on_run_now(spec, life, event, moment) -> Step:
    if spec.type in (JobType.ALWAYS, JobType.TRIGGER) or life.active or not _runnable(replace(life, held=False)):
        return Step(life=life)
    return Step(life=replace(life, waking=False), actions=(CancelWake(), Spawn(due=moment.wall)))


def _on_reconfigure(spec, life, event, moment) -> Step:
    life = replace(life, ineligible=event.ineligible, spec_enabled=event.spec_enabled)
    if life.down or life.intent in (Intent.REMOVE, Intent.SHUTDOWN):
        return Step(life=life)
    if life.active:
        if life.intent is not Intent.NONE:
            return Step(life=life)
        if life.ineligible or not life.is_enabled:
            return _stop_processes(life, Intent.RECONFIGURE, Outcome.STOPPED)
        if event.restart and spec.type is JobType.ALWAYS:
            return _stop_processes(life, Intent.RESTART, Outcome.STOPPED)
        return Step(life=life)
    actions = (CancelWake(),)
    life = replace(life, waking=False)
    if life.status in (Status.FAILED, Status.BACKOFF):
        life = _status(life, Status.STOPPED, "configuration changed", attempts=0, next_due=None)
    elif life.status in (Status.DISABLED, Status.INELIGIBLE) and life.is_enabled and not life.ineligible:
        life = _status(life, Status.STOPPED, "configuration changed")
    return _consider(spec, life, moment, actions)


# ---------------------------------------------------------------- facts

def _on_consider(spec, life, event, moment) -> Step:
    return _consider(spec, life, moment)


def _on_woke(spec, life, event, moment) -> Step:
    if not life.waking:
        return Step(life=life)
    if life.spawn_after is not None and moment.boot < life.spawn_after:   # early: wait on
        return Step(life=life, actions=(Wake(boot=life.spawn_after),))
    life = replace(life, waking=False)
    if life.status is Status.FAILED and _runnable(life):
        probe = Announce(name="job_probe", message="cool-down over; starting the failed job again")
        return _consider(spec, life, moment, (probe,))
    return _consider(spec, life, moment)


def _on_planned(spec, life, event, moment) -> Step:
    if not _runnable(life) or life.active or life.retrying or spec.type in (JobType.ALWAYS, JobType.TRIGGER):
        return Step(life=life)
    actions = (Announce(name="runs_missed", message=event.missed),) if event.missed else ()
    if event.runs > 0:
        life = replace(life, owed=event.runs - 1, owed_due=event.due, next_due=event.next_wall)
        return Step(life=life, actions=actions + (Spawn(due=event.due),))
    life = _status(life, Status.WAITING, event.why, next_due=event.next_wall)
    if event.next_wall is not None or event.next_boot is not None:
        life = replace(life, waking=True)
        actions += (Wake(boot=event.next_boot, wall=event.next_wall),)
    return _dispatch_triggers(spec, life, actions) if life.queued else Step(life=life, actions=actions)


def _on_queued(spec, life, event, moment) -> Step:
    count = max(0, life.queued + event.count if event.added else event.count)
    life = replace(life, queued=count)
    if spec.type is JobType.ALWAYS or not _runnable(life) or _holding(life, moment):
        return Step(life=life)
    if spec.type is not JobType.TRIGGER and (life.active or life.retrying):
        return Step(life=life)
    return _dispatch_triggers(spec, life, ())


def _on_claimed(spec, life, event, moment) -> Step:
    if event.failing:
        return Step(life=life)
    if not event.found:
        life = replace(life, queued=0)
        if spec.type is JobType.TRIGGER and not life.active and not life.retrying and _runnable(life):
            life = _status(life, Status.WAITING, "waiting for a trigger", next_due=None)
        return Step(life=life)
    life = replace(life, queued=max(0, life.queued - 1))
    limit = spec.max_parallel if spec.type is JobType.TRIGGER else 1
    full = life.active + life.retrying >= limit     # another claim in flight took the last slot
    if not _runnable(life) or spec.type is JobType.ALWAYS or _holding(life, moment) or full:
        return Step(life=life, actions=(TriggerFate(fate="requeue"),))
    return Step(life=replace(life, waking=False), actions=(CancelWake(), Spawn(trigger=True)))


def _on_spawned(spec, life, event, moment) -> Step:
    why = event.why
    life = replace(life, active=life.active + 1, spawn_after=None)
    if spec.type is not JobType.ALWAYS:
        life = replace(life, attempts=0)
    if life.intent is not Intent.NONE:   # started while stopping (a retry raced a stop): stop it too
        return Step(life=life, actions=(StopRuns(outcome=Outcome.STOPPED),))
    next_due = None if spec.type is JobType.ALWAYS else life.next_due
    return Step(life=_status(life, Status.RUNNING, why, next_due=next_due, waking=False))


def _on_spawn_failed(spec, life, event, moment) -> Step:
    """A job that cannot be started backs off, then fails: never a tight loop, never the
    daemon's fault. A trigger it was to run goes back to the queue (it never ran); a slot
    it was to run is owed again."""
    fate = (TriggerFate(fate="requeue"),)
    if life.intent is not Intent.NONE or life.down:
        return _after_last_exit(spec, life, moment, fate) if not life.active else Step(life=life, actions=fate)
    attempts = life.attempts + 1
    limit = max(spec.retries, 1) if spec.type is JobType.ALWAYS else SPAWN_FAILURES
    if event.due is not None and spec.type is not JobType.ALWAYS:
        life = replace(life, owed=life.owed + 1, owed_due=event.due)
    failed = attempts >= limit
    at = moment.boot + (spec.failed_cooldown if failed else schedule.backoff_delay(spec, attempts, moment.u))
    life = replace(life, attempts=attempts, spawn_after=at, waking=True)
    actions = fate + (Wake(boot=at),)
    if life.active:     # its other runs keep it running; new ones wait
        return Step(life=life, actions=actions + (Announce(name="spawn_backoff", message=event.why),))
    if failed:
        life = _status(life, Status.FAILED, f"{event.why} ({attempts} times in a row); trying again later",
                       next_due=moment.wall_of(at))
        return Step(life=life, actions=actions + (Announce(name="job_failed", message=life.why),)
                    + _hook(spec, "on_failure", Outcome.SPAWN_FAILED, None, life.why))
    life = _status(life, Status.BACKOFF, f"{event.why}; trying again in {at - moment.boot:.2g} s "
                   f"(attempt {attempts}/{limit})", next_due=moment.wall_of(at))
    return Step(life=life, actions=actions + (Announce(name="restart_scheduled", message=life.why),))


def _on_exited(spec, life, event, moment) -> Step:
    if not life.active:
        return Step(life=life)
    life = replace(life, active=life.active - 1)
    if life.intent is not Intent.NONE or life.down:
        fate = _cut_short_fate(life, event)
        return _after_last_exit(spec, life, moment, fate) if not life.active else Step(life=life, actions=fate)
    if spec.type is JobType.ALWAYS:
        return _after_always(spec, life, event, moment) if not life.active else Step(life=life)
    return _after_other(spec, life, event, moment)


def _cut_short_fate(life: Life, event: Exited) -> tuple:
    if not event.trigger:
        return ()
    stopped_by_us = event.outcome is Outcome.STOPPED and life.intent in (Intent.SHUTDOWN, Intent.RESTART)
    return (TriggerFate(fate="requeue" if stopped_by_us else "finish"),)


def _after_last_exit(spec, life: Life, moment: Moment, actions: tuple) -> Step:
    """Every process is gone: do what the job intended, then what its flags say now (a
    job started or enabled again while it was stopping runs again)."""
    intent, life = life.intent, replace(life, intent=Intent.NONE, owed=0)
    if intent is Intent.REMOVE:
        return Step(life=_status(life, Status.STOPPED, "removed from the configuration", next_due=None),
                    actions=actions + (Forget(),))
    if life.down:
        return Step(life=_status(life, Status.STOPPED, "daemon stopped", next_due=None), actions=actions)
    if intent is Intent.RESTART:
        return _start_again(spec, _status(life, Status.STOPPED, "restarting on request", attempts=0), moment, actions)
    life = _status(life, Status.STOPPED, _STOPPED_WHY.get(intent, ""), next_due=None)
    return _consider(spec, life, moment, actions)


_STOPPED_WHY = {Intent.STOP: "stopped on request", Intent.DISABLE: "disabled",
                Intent.REPLACE: "replaced a process left by the previous daemon",
                Intent.RECONFIGURE: "configuration changed"}


def _after_always(spec, life: Life, event: Exited, moment: Moment) -> Step:
    verdict = schedule.after_exit(spec, life.attempts, event.uptime, event.exit_code, moment.boot, moment.u)
    text = event.text
    if isinstance(verdict, schedule.Done):
        life = _status(life, Status.STOPPED, f"{text}; {verdict.why}", attempts=0, next_due=None)
        return Step(life=life, actions=_final_hook(spec, event, life.why))
    if isinstance(verdict, schedule.GiveUp):
        life = _status(life, Status.FAILED, f"{verdict.why} (last: {text}); trying again later",
                       attempts=verdict.attempts, next_due=moment.wall_of(verdict.at), waking=True)
        return Step(life=life, actions=(Announce(name="job_failed", message=life.why), Wake(boot=verdict.at))
                    + _hook(spec, "on_failure", event.outcome, event.exit_code, life.why))
    life = replace(life, attempts=verdict.attempts, restarts=life.restarts + 1)
    if verdict.at <= moment.boot:
        return Step(life=life, actions=(Spawn(),))
    life = _status(life, Status.BACKOFF, f"{text}; {verdict.why}", next_due=moment.wall_of(verdict.at), waking=True)
    return Step(life=life, actions=(Announce(name="restart_scheduled", message=life.why), Wake(boot=verdict.at)))


def _after_other(spec, life: Life, event: Exited, moment: Moment) -> Step:
    verdict = schedule.after_run(spec, event.attempt, event.outcome, moment.boot, moment.u)
    if isinstance(verdict, schedule.Retry):
        why = f"{event.outcome.value}; {verdict.why}"
        life = replace(life, retrying=life.retrying + 1)
        if not life.active:
            life = _status(life, Status.BACKOFF, why, attempts=event.attempt, next_due=moment.wall_of(verdict.at))
        fate = (TriggerFate(fate="keep"),) if event.trigger else ()
        return Step(life=life, actions=fate + (Announce(name="retry_scheduled", message=why),
                                               RetryLater(at=verdict.at, attempt=verdict.attempt)))
    actions = ((TriggerFate(fate="finish"),) if event.trigger else ()) + _final_hook(spec, event, verdict.why)
    if spec.type is JobType.IDLE and event.outcome is not Outcome.PREEMPTED:
        actions += (RememberRun(slot=event.due if event.due is not None else event.started),)
    if not life.active:
        life = _status(life, Status.WAITING, f"last run: {verdict.why}", attempts=0)
    return _consider(spec, life, moment, actions)


def _on_retry_due(spec, life, event, moment) -> Step:
    if not life.retrying:
        return Step(life=life)
    life = replace(life, retrying=life.retrying - 1)
    if not _runnable(life):
        if not life.active and life.status is Status.BACKOFF:
            life = _status(life, Status.STOPPED, "retry cancelled", next_due=None)
        return Step(life=life, actions=(RequeueRetry(),))
    limit = spec.max_parallel if spec.type is JobType.TRIGGER else 1
    if life.active >= limit:   # another run still holds the slot: the retry waits a little more
        return Step(life=replace(life, retrying=life.retrying + 1),
                    actions=(RetryLater(at=moment.boot + max(spec.backoff, 0.1), attempt=event.attempt),))
    return Step(life=life, actions=(Spawn(attempt=event.attempt, retry=True),))


def _on_adopted(spec, life, event, moment) -> Step:
    second = spec.type is JobType.ALWAYS and life.active > 0
    life = replace(life, active=life.active + 1, waking=False)
    if life.intent is not Intent.NONE:       # already stopping: this one stops too
        return Step(life=life, actions=(StopRuns(outcome=Outcome.STOPPED),))
    if second:                               # never two copies of an always job
        said = Announce(name="duplicate_stopped", message="a second copy was left running; stopping it")
        return Step(life=life, actions=(said, StopRun(run=event.run, outcome=Outcome.STOPPED)))
    life = _status(life, Status.RUNNING, "" if event.reexec else "adopted after a daemon crash",
                   next_due=None if spec.type is JobType.ALWAYS else life.next_due)
    if not event.keep:
        return _stop_processes(_status(life, Status.RUNNING, "left by the previous daemon"), Intent.REPLACE,
                               Outcome.STOPPED)
    if life.down or life.ineligible or not life.is_enabled or life.standby:
        return _stop_processes(life, Intent.RECONFIGURE, Outcome.STOPPED)
    if event.stale and spec.type is JobType.ALWAYS:
        return _stop_processes(_status(life, Status.RUNNING, "its configuration changed while no daemon ran"),
                               Intent.RESTART, Outcome.STOPPED)
    return Step(life=life, actions=(CancelWake(),))


def _on_lease_granted(spec, life, event, moment) -> Step:
    if not life.standby:
        return Step(life=life)
    life = replace(life, standby="")
    if life.status is Status.STANDBY:
        life = _status(life, Status.STOPPED, "this device holds the lease")
    return _consider(spec, life, moment)


def _on_lease_lost(spec, life, event, moment) -> Step:
    life = replace(life, standby=event.why or "another device holds the lease")
    if life.active:
        if life.intent in (Intent.NONE, Intent.RESTART):
            return _stop_processes(life, Intent.RECONFIGURE, Outcome.STOPPED)
        return Step(life=life)
    return _consider(spec, life, moment)


def _on_preempt(spec, life, event, moment) -> Step:
    if spec.type is not JobType.IDLE or not life.active or life.intent is not Intent.NONE:
        return Step(life=life)
    return Step(life=life, actions=(Announce(name="preempted", message="other work started; stopping the idle run"),
                       StopRuns(outcome=Outcome.PREEMPTED)))


def _on_timed_out(spec, life, event, moment) -> Step:
    if not life.active:
        return Step(life=life)
    return Step(life=life, actions=(StopRun(run=event.run, outcome=Outcome.TIMEOUT),))


_HANDLERS = {
    Start: _on_start, Stop: _on_stop, Restart: _on_restart, Enable: _on_enable, Disable: _on_disable,
    RunNow: _on_run_now, Shutdown: _on_shutdown, Remove: _on_remove, Reconfigure: _on_reconfigure,
    Consider: _on_consider, Woke: _on_woke, Planned: _on_planned, Queued: _on_queued, Claimed: _on_claimed,
    Spawned: _on_spawned, SpawnFailed: _on_spawn_failed, Exited: _on_exited, RetryDue: _on_retry_due,
    Adopted: _on_adopted, LeaseGranted: _on_lease_granted, LeaseLost: _on_lease_lost, Preempt: _on_preempt,
    TimedOut: _on_timed_out,
}
