"""The planner: what is due for a job, asked when the lifecycle table says Plan or Claim.

Plan: a scheduled job's slots come from `schedule.plan` (its schedule memory, the last
slot and the day's random draw, is stored with the job's state); an idle job's moment
from `schedule.idle_due`. Claim: the oldest queued trigger of the job, from the store;
a trigger that can never run as asked (an always job, keyword arguments for a command,
an argument exec cannot take) is rejected with the reason, never retried. The queue:
how many triggers wait for each job, re-read when another process wrote the store;
triggers of jobs the configuration lacks (a typo, an invalid table) stay queued with a
reason until the job is back or `aios triggers drop` removes them. Part of the engine.
"""
from __future__ import annotations

import random
from datetime import datetime

from .. import launch, lifecycle as lc, schedule
from ..spec import JobType, Trigger
from ..store import StoreError

CONTROL_ROWS = ("RESTART_ALL", "RESTART_")   # rows of the original orchestrator's control path


class Planner:
    def __init__(self, engine):
        self.engine = engine
        self._zone = None

    def zone(self):
        if self._zone is None:
            from ..config import local_zone

            self._zone = local_zone()
        return self._zone

    # ================================================================ plan
    def plan(self, job) -> None:
        """Feed Planned: what the scheduled or idle job should start now, and when to look again."""
        planned = self._idle(job) if job.spec.type is JobType.IDLE else self._scheduled(job)
        self.engine.handle(job, planned)

    def now(self) -> schedule.Now:
        loop = self.engine.loop
        return schedule.Now(wall=datetime.fromtimestamp(loop.wall, self.zone()), boot=loop.boot,
                            boot_id=loop.clock.boot_id)

    def _scheduled(self, job) -> lc.Planned:
        eng, now = self.engine, self.now()
        plan = schedule.plan(job.spec, job.state, now, random.random())
        eng.update_state(job, last_slot=plan.last_slot, slot_boot=plan.slot_boot, boot_id=now.boot_id,
                         draw_day=plan.draw_day or job.state.draw_day,
                         draw_at=plan.draw_at if plan.draw_day else job.state.draw_at)
        runs = plan.runs if self._slot_is_ours(job, plan) else 0
        missed = (f"{plan.missed} run(s) missed; catch_up = {job.spec.catch_up!r}: running {runs}"
                  if plan.missed else "")
        why = "next run at " + self._clock_text(plan.next_due) if plan.next_due else "waiting"
        return lc.Planned(runs=runs, due=plan.due, next_wall=plan.next_due, next_boot=plan.next_boot,
                          why=why, missed=missed)

    def _slot_is_ours(self, job, plan) -> bool:
        """A fleet job's slot runs once in the whole fleet: claimed by whoever holds the
        lease when it is due (a lease that moved cannot make it run twice)."""
        eng = self.engine
        if not plan.runs or eng.fleet is None or job.spec.scope != "fleet":
            return True
        try:
            return eng.store.claim_slot(job.name, repr(plan.due), eng.device)
        except StoreError as exc:
            eng.recorder.failed(exc)
            return False

    def _idle(self, job) -> lc.Planned:
        """Idleness is measured on the boot clock: a wall clock step neither starts nor delays it."""
        runs, now = self.engine.runs, self.now()
        due = schedule.idle_due(job.spec, job.state, None if runs.busy else runs.quiet_since, now)
        if due is None:
            return lc.Planned(why="waiting for other jobs to finish")
        if due <= now.boot:
            return lc.Planned(runs=1, due=self.engine.loop.wall)
        wall = self.engine.loop.wall + (due - now.boot)
        return lc.Planned(next_boot=due, next_wall=wall, why="waiting for idleness")

    def remember_idle_run(self, job, slot: float) -> None:
        """An idle run that was not preempted: none other within its cooldown."""
        loop = self.engine.loop
        self.engine.update_state(job, last_slot=slot, slot_boot=loop.boot - (loop.wall - slot),
                                 boot_id=loop.clock.boot_id)

    def _clock_text(self, wall: float) -> str:
        moment = datetime.fromtimestamp(wall, self.zone())
        return moment.strftime("%H:%M:%S" if abs(wall - self.engine.loop.wall) < 86400 else "%Y-%m-%d %H:%M")

    # ================================================================ claim
    def claim(self, job) -> None:
        """Feed Claimed: the oldest runnable trigger of the job, claimed for this device."""
        from .core import Context

        eng = self.engine
        while not eng.recorder.failing:
            try:
                trigger = eng.store.claim_trigger(job.name, eng.loop.wall)
            except StoreError as exc:   # claimed once the store works again (Engine._recovered)
                eng.recorder.failed(exc)
                break
            if trigger is None:
                return eng.handle(job, lc.Claimed(found=False))
            problem = ("kwargs is not a JSON object" if trigger.kwargs is None     # another program's row
                       else refusal(job.spec, trigger.args, trigger.kwargs))
            if problem is None:
                return eng.handle(job, lc.Claimed(found=True), ctx=Context(trigger=trigger))
            self.reject(job.name, trigger.id, problem)
        eng.handle(job, lc.Claimed(found=False, failing=True))

    def reject(self, name: str, trigger_id: int, why: str) -> None:
        eng = self.engine
        outcome = f"rejected: {why}"
        eng.recorder.write(eng.store.finish_trigger, trigger_id, outcome, eng.loop.wall,
                           then=lambda: eng.trigger_finished(trigger_id, outcome, None))
        eng.event("trigger_rejected", name if name in eng.jobs else None, f"trigger {trigger_id} of {name!r}: {why}")

    # ================================================================ the queue
    def refresh_queue(self, anyway: bool = False, control: bool = True) -> dict | None:
        """Re-read how many triggers wait for each job when another process wrote the
        store (or `anyway`), and act on control rows (unless not `control`); the counts,
        or None if no change was seen."""
        eng = self.engine
        try:
            if eng.shutting_down or not (eng.store.changed() or anyway):
                return None
            counts = eng.store.pending_counts()
        except StoreError as exc:
            eng.recorder.failed(exc)
            return None
        for name, count in counts.items():
            if name in eng.jobs:
                eng.handle(eng.jobs[name], lc.Queued(count=count))
        eng.orphans = {n: c for n, c in counts.items() if c and n not in eng.jobs and not n.startswith(CONTROL_ROWS)}
        if control:
            self.control_rows(counts)
        return counts

    def control_rows(self, counts: dict) -> None:
        """Rows of the original control path: RESTART_ALL and RESTART_<job>."""
        eng = self.engine
        for name in [n for n, c in counts.items() if c and n.startswith(CONTROL_ROWS) and n not in eng.jobs]:
            try:
                while not eng.recorder.failing and (trigger := eng.store.claim_trigger(name, eng.loop.wall)):
                    outcome = self._control_row(name)
                    eng.recorder.write(eng.store.finish_trigger, trigger.id, outcome, eng.loop.wall)
                    eng.event("control_row", None, f"trigger {trigger.id} {name}: {outcome}")
            except StoreError as exc:   # handled once the store works again
                return eng.recorder.failed(exc)

    def _control_row(self, name: str) -> str:
        from .operations import OperationError

        ops = self.engine.ops
        if name == "RESTART_ALL":
            for job in list(self.engine.jobs.values()):
                if job.spec.type is JobType.ALWAYS and job.life.is_enabled and not job.life.ineligible:
                    ops.restart(job.name)
            return "ok"
        try:
            ops.restart(name[len("RESTART_"):])
        except OperationError as exc:
            return f"rejected: {exc}"
        return "ok"


def refusal(spec, args, kwargs) -> str | None:
    """Why a trigger of `spec` with these arguments can never run, or None."""
    if spec.type is JobType.ALWAYS:
        return f"job {spec.name!r} is an always job; it cannot be triggered (use restart)"
    if set(kwargs or {}) - launch.RESERVED and not spec.program:
        return (f"job {spec.name!r} runs a command, which takes positional arguments only; "
                "keyword arguments are for program jobs")
    problem = launch.exec_problem(spec, Trigger(job=spec.name, args=tuple(args), kwargs=dict(kwargs or {})))
    return problem and f"trigger of {spec.name!r}: {problem}"
