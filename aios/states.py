"""The job status vocabulary and its transitions, read off the lifecycle table.

`Model` carries out a job's actions the way the engine does, with the results (spawned
or not, a trigger claimed or not, what is due) chosen by the caller; `transitions()`
explores the table from a fresh job of each type and collects every status change with
the events that cause it; `render()` writes them as the text of docs/states.md and of
`aios help states`. The property test (tests/test_lifecycle.py) drives `Model` with
random events and choices. Imports lifecycle and spec.
"""
from __future__ import annotations

from . import lifecycle as lc
from .spec import JobSpec, JobType, Outcome, Status

STATUS_MEANING = {
    Status.STOPPED: "not running and nothing planned (stopped on request, exited, or not started yet)",
    Status.WAITING: "scheduled: waiting for its time, a trigger or idleness",
    Status.RUNNING: "one or more of its processes run",
    Status.STOPPING: "stop signal sent; waiting for the process group to exit",
    Status.BACKOFF: "waiting to start again after a failure (a quick exit, a failed run, a failed spawn)",
    Status.FAILED: "failed too often in a row (crash loop, or cannot be started); tried again after a cool-down",
    Status.DISABLED: "disabled (`aios disable`, or enabled = false); kept across restarts",
    Status.INELIGIBLE: "its tags are not all in DEVICE_TAGS: it does not run on this device",
    Status.STANDBY: "a fleet job (scope = \"fleet\") whose lease another device holds: it runs there, not here",
}


class Model:
    """One job driven through the table, its actions carried out as the engine does.
    `choose(kind, options)` picks the result of an action: "spawn" (True: spawned),
    "claim" (True: a trigger was there), "plan" (runs due: 0, 1 or more)."""

    def __init__(self, spec: JobSpec, choose, life: lc.Life | None = None):
        self.spec, self.choose = spec, choose
        self.life = life or lc.Life(spec_enabled=spec.enabled)
        self.processes = 0          # what the engine would count as running
        self.stopping = 0           # of which were sent their stop signal
        self.retries = 0            # RetryLater timers pending
        self.wake = False           # a Wake timer pending
        self.forgotten = False
        self.steps: list = []       # (life before, event, Step) in order

    def feed(self, event, moment: lc.Moment) -> None:
        if self.forgotten:
            return
        before = self.life
        result = lc.step(self.spec, before, event, moment)
        self.life = result.life
        self.steps.append((before, event, result))
        for action in result.actions:
            self._carry_out(action, moment)

    def _carry_out(self, action, moment: lc.Moment) -> None:
        kind = type(action)
        if kind is lc.Spawn:
            if self.choose("spawn", (True, False)):
                self.processes += 1
                self.feed(lc.Spawned(), moment)
            else:
                self.feed(lc.SpawnFailed(why="No such file or directory", due=action.due), moment)
        elif kind is lc.Claim:
            found = self.life.queued > 0 and self.choose("claim", (True, False))
            self.feed(lc.Claimed(found=found), moment)
        elif kind is lc.Plan:
            runs = self.choose("plan", (0, 1, 3))
            self.feed(lc.Planned(runs=runs, due=moment.wall, next_wall=moment.wall + 60, why="next run"), moment)
        elif kind is lc.StopRuns:
            self.stopping = self.processes
        elif kind is lc.StopRun:
            self.stopping = min(self.processes, self.stopping + 1)
        elif kind is lc.Wake:
            self.wake = True
        elif kind is lc.CancelWake:
            self.wake = False
        elif kind is lc.RetryLater:
            self.retries += 1
        elif kind is lc.Forget:
            self.forgotten = True
        elif kind in (lc.TriggerFate, lc.RequeueRetry) and getattr(action, "fate", "requeue") == "requeue":
            self.feed(lc.Queued(count=1, added=True), moment)   # the trigger is back in the queue

    def adopt(self, event: lc.Adopted, moment: lc.Moment) -> None:
        """The engine took back a process the last daemon left running."""
        self.processes += 1
        self.feed(event, moment)

    def exit(self, outcome: Outcome, moment: lc.Moment, uptime: float = 0.1, trigger: bool = False) -> None:
        """One of the job's processes ends (the engine's reap); one sent a stop signal first."""
        if self.processes:
            self.processes -= 1
            self.stopping = max(0, self.stopping - 1)
            self.feed(lc.Exited(outcome=outcome, uptime=uptime, text="exited", trigger=trigger,
                                exit_code=0 if outcome is Outcome.OK else 1), moment)

    def fire_wake(self, moment: lc.Moment) -> None:
        if self.wake:
            self.wake = False
            self.feed(lc.Woke(), moment)

    def fire_retry(self, moment: lc.Moment) -> None:
        if self.retries:
            self.retries -= 1
            self.feed(lc.RetryDue(attempt=2), moment)


# ---------------------------------------------------------------- exploring the table

_SPECS = {
    JobType.ALWAYS: JobSpec(name="a", type=JobType.ALWAYS, command=("x",), retries=2, min_uptime=1.0),
    JobType.INTERVAL: JobSpec(name="s", type=JobType.INTERVAL, command=("x",), interval=60.0, retries=1),
    JobType.TRIGGER: JobSpec(name="t", type=JobType.TRIGGER, command=("x",), retries=1, max_parallel=2),
    JobType.IDLE: JobSpec(name="i", type=JobType.IDLE, command=("x",)),
}
_REQUESTS = (lc.Start(), lc.Stop(), lc.Restart(), lc.Enable(), lc.Disable(), lc.RunNow(), lc.Consider(),
             lc.Reconfigure(restart=True), lc.Reconfigure(ineligible="tag missing on this device: gpu"),
             lc.Queued(count=1, added=True), lc.Preempt(), lc.LeaseLost(why="runs on lab-2"), lc.LeaseGranted(),
             lc.Shutdown())


def transitions(depth: int = 4) -> dict[tuple[Status, Status], set[str]]:
    """(from, to) -> names of the events that made that status change, found by feeding
    every short sequence of requests, exits and timer firings to a fresh job of each kind,
    with every result of its actions."""
    found: dict[tuple[Status, Status], set[str]] = {}
    for spec in _SPECS.values():
        for results in _result_choices():
            _explore(spec, results, depth, found)
    return found


def _result_choices():
    for spawn in (True, False):
        for claim in (True, False):
            for runs in (0, 1):
                yield {"spawn": spawn, "claim": claim, "plan": runs}


def _explore(spec: JobSpec, results: dict, depth: int, found: dict) -> None:
    moment = lc.Moment(boot=1000.0, wall=1_700_000_000.0, u=0.0)
    frontier = []
    for adopted in ((), (lc.Adopted(),), (lc.Adopted(keep=False),), (lc.Adopted(stale=True),)):
        model = Model(spec, lambda kind, options: results[kind])
        for event in adopted:
            model.adopt(event, moment)
        model.feed(lc.Consider(), moment)
        frontier.append(model)
    for _ in range(depth):
        nxt = []
        for model in frontier:
            for poke in _pokes(model):
                copy = _copy(model)
                poke(copy, moment)
                nxt.append(copy)
        for model in nxt:
            for before, event, result in model.steps:
                if before.status is not result.life.status:
                    found.setdefault((before.status, result.life.status), set()).add(type(event).__name__)
            model.steps = []
        frontier = _distinct(nxt)


def _pokes(model: Model):
    for request in _REQUESTS:
        yield lambda m, t, r=request: m.feed(r, t)
    for outcome in (Outcome.OK, Outcome.FAILED):
        yield lambda m, t, o=outcome: m.exit(o, t, uptime=5.0 if o is Outcome.OK else 0.1)
    yield Model.fire_wake
    yield Model.fire_retry


def _copy(model: Model) -> Model:
    copy = Model(model.spec, model.choose, model.life)
    copy.processes, copy.stopping, copy.retries, copy.wake, copy.forgotten = (
        model.processes, model.stopping, model.retries, model.wake, model.forgotten)
    return copy


def _distinct(models: list) -> list:
    seen, kept = set(), []
    for model in models:
        key = (model.life, model.processes, model.stopping, model.retries, model.wake, model.forgotten)
        if key not in seen:
            seen.add(key)
            kept.append(model)
    return kept


def render() -> str:
    """docs/states.md: what each status means, and which events move a job between them."""
    lines = ["# Job states", "",
             "Generated from the lifecycle table (`aios/lifecycle.py`) by `aios help states`;",
             "tests/test_lifecycle.py fails when this file and the table disagree.", "",
             "| status | meaning |", "| --- | --- |"]
    lines += [f"| {status.value} | {meaning} |" for status, meaning in STATUS_MEANING.items()]
    lines += ["", "## Transitions", "", "| from | to | on |", "| --- | --- | --- |"]
    order = list(Status)
    for (old, new), events in sorted(transitions().items(), key=lambda kv: (order.index(kv[0][0]),
                                                                             order.index(kv[0][1]))):
        lines.append(f"| {old.value} | {new.value} | {', '.join(sorted(events))} |")
    lines += ["", "## Events", ""]
    lines += [f"- **{e.__name__}**: {' '.join((e.__doc__ or '').split())}" for e in lc.EVENTS]
    lines.append("")
    return "\n".join(lines)
