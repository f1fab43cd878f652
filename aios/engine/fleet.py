"""Fleet mode: many devices, one PostgreSQL. This device's part of it, active only when
the store is shared (`store.fleet`):

- its heartbeat (id, tags, version, load), every ttl/3;
- the fleet's jobs: the set published by `aios apply` on any device, read again when the
  database says it changed (LISTEN/NOTIFY), merged with this device's own jobs (local =
  true) and brought in line (reconcile);
- the leases of the fleet-scope jobs it may run. A job with scope = "fleet" runs only on
  the device holding its lease; the others stand by (lifecycle: LeaseGranted, LeaseLost).
  A new holder of a scheduled job takes the newest schedule memory any device stored
  (last slot, the day's draw), and each slot runs once fleet-wide (store.claim_slot).
  Who tries first: the job's `prefer` devices in order, then the least loaded live
  device; the others try once the lease has stayed free a while (rank x ttl/3), so a dead
  holder's jobs move within the ttl. Leases carry an epoch (a fencing token) that every
  run records; expiry is decided by the database's clock;
- fencing: a holder must have stopped its copy before its lease can expire. It renews
  every ttl/3; the lease holds until T + ttl on the database's clock, T being when the
  last successful renewal was SENT, so this device's deadline is T + ttl (its own boot
  clock, less 1 % for clock rates) less the copy's stop time: when a renewal fails or
  cannot reach the database in time, the copy is stopped (its stop signal, then SIGKILL
  at the deadline), and a new holder can only acquire after the expiry;
- the fence (supervisor/fence.py), a small process of its own that SIGKILLs a copy at its
  lease's deadline unless this daemon moved the deadline on first: a daemon frozen
  (SIGSTOP) or killed cannot keep a copy running past its lease;
- operations routed to it by other devices (`aios restart JOB --device ID`), carried out
  as if asked on its own socket;
- the triggers a device claimed and did not finish go back to the queue once it has been
  silent for RECLAIM_AFTER ttls (any live device does it; the database's clock decides):
  a run that device still carries on, cut off from the database, may then run twice.

Part of the engine.
"""
from __future__ import annotations

import os

from .. import lifecycle as lc
from ..spec import JobType
from ..store import StoreError

MARGIN = 0.01            # the part of a ttl left for clock-rate differences
RECLAIM_AFTER = 10       # ttls without a heartbeat after which a device's trigger claims go back
_SCHEDULED = (JobType.DAILY, JobType.INTERVAL, JobType.RANDOM_DAILY)
ROUTE_PATIENCE = 10.0    # seconds a routed operation waits for the other device's answer


class Held:
    """A lease this device holds, and when its last successful renewal was sent."""

    __slots__ = ("lease", "sent", "fence")

    def __init__(self, lease, sent: float):
        self.lease, self.sent, self.fence = lease, sent, None


class Fleet:
    def __init__(self, engine):
        self.engine = engine
        self.held: dict[str, Held] = {}
        self.free_since: dict[str, float] = {}   # job -> boot time its lease was first seen free
        self.version = 0                        # the published jobs' version this device runs
        self.devices: list = []
        self.routed: dict[int, tuple] = {}      # command id -> (reply, deadline)
        self._tick_timer = None
        self._fence = None

    @property
    def ttl(self) -> float:
        return self.engine.settings.lease_ttl

    def start(self) -> None:
        if self.fleet_jobs():
            try:
                self.fence().start()   # connected before the first copy needs it
            except OSError as exc:
                self.engine.event("fence_unreachable", None, str(exc))
        self.tick()

    # ================================================================ the regular tick
    def tick(self) -> None:
        """Heartbeat, renew what is held, try for what is wanted; again in ttl/3."""
        eng = self.engine
        self._tick_timer = None
        if eng.stopped:
            return
        try:
            eng.store.heartbeat(eng.device, sorted(eng.settings.tags), _version(), os.getloadavg()[0])
            self.devices = eng.store.devices()
            self.reclaim()
        except StoreError as exc:
            eng.recorder.failed(exc)
        self.renew()
        if not eng.shutting_down:
            self.acquire()
        self._tick_timer = eng.loop.call_later(self.ttl / 3, self.tick)

    def reclaim(self) -> None:
        """Put back the trigger claims of devices silent for RECLAIM_AFTER ttls."""
        eng, silent = self.engine, RECLAIM_AFTER * self.ttl
        for device in self.devices:
            if device.id != eng.device and device.claimed and device.age is not None and device.age > silent:
                if count := eng.store.reclaim_triggers(device.id, silent):
                    eng.event("triggers_reclaimed", None, f"{count} trigger(s) claimed by {device.id}, silent for "
                              f"{device.age:.0f} s, are back in the queue")
                    eng.planner.refresh_queue(anyway=True)   # our own change wakes the others, not us

    def fleet_jobs(self) -> list:
        return [job for job in self.engine.jobs.values() if job.spec.scope == "fleet"]

    # ================================================================ leases
    def epoch(self, name: str) -> int | None:
        held = self.held.get(name)
        return held.lease.epoch if held else None

    def renew(self) -> None:
        eng = self.engine
        for name, held in list(self.held.items()):
            job = eng.jobs.get(name)
            if job is None or not self._wanted(job):
                self._release(name, held)
                continue
            sent = eng.loop.boot
            try:
                lease = eng.store.renew_lease(name, eng.device, held.lease.epoch, self.ttl)
            except StoreError as exc:
                eng.recorder.failed(exc)
                self._at_risk(job, held, f"cannot renew its lease: {exc}")
                continue
            if lease is None:
                self._lose(job, held, "its lease was lost (it expired, or another device holds it)")
            else:
                held.lease, held.sent = lease, sent
                self._arm_fence(job, held)

    def acquire(self) -> None:
        eng = self.engine
        try:
            leases = {lease.job: lease for lease in eng.store.leases()}
        except StoreError as exc:
            return eng.recorder.failed(exc)
        for job in self.fleet_jobs():
            if job.name in self.held or not self._wanted(job):
                continue
            holder = leases.get(job.name)
            if holder is not None:
                self.free_since.pop(job.name, None)
                self._stand_by(job, f"runs on {holder.device} (lease epoch {holder.epoch})")
                continue
            if self._my_turn(job):
                self._try(job)
        return None

    def _try(self, job) -> None:
        eng = self.engine
        sent = eng.loop.boot
        try:
            lease = eng.store.acquire_lease(job.name, eng.device, self.ttl)
        except StoreError as exc:
            return eng.recorder.failed(exc)
        if lease is None:
            return None
        held = self.held[job.name] = Held(lease, sent)
        self.free_since.pop(job.name, None)
        self._arm_fence(job, held)
        self._inherit_schedule(job)
        eng.event("lease_acquired", job.name, f"holds the lease (epoch {lease.epoch}) for {self.ttl:g} s at a time")
        eng.handle(job, lc.LeaseGranted())
        return None

    def _inherit_schedule(self, job) -> None:
        """The job's schedule went on where the lease was: take the newest memory of it that
        any device stored (its last slot, the day's random draw), so that a lease that moved
        neither runs a slot again nor draws the day anew."""
        eng = self.engine
        if job.spec.type not in _SCHEDULED:
            return None
        try:
            states = eng.store.fleet_states()
        except StoreError as exc:
            return eng.recorder.failed(exc)
        theirs = [jobs[job.name] for device, jobs in states.items()
                  if device != eng.device and job.name in jobs and jobs[job.name].last_slot is not None]
        newest = max(theirs, key=lambda state: state.last_slot, default=None)
        if newest is not None and newest.last_slot > (job.state.last_slot or float("-inf")):
            eng.update_state(job, last_slot=newest.last_slot, slot_boot=None, boot_id=None,   # their boot clock
                             draw_day=newest.draw_day, draw_at=newest.draw_at)
        return None

    def _my_turn(self, job) -> bool:
        """The best-placed live device tries at once; the n-th after the lease has stayed
        free n x ttl/3 (so a better one that is alive gets it first)."""
        eng = self.engine
        live = [d for d in self.devices if d.age is not None and d.age < self.ttl
                and set(job.spec.tags) <= set(d.tags)]
        prefer = list(job.spec.prefer)

        def rank(device) -> tuple:
            return (prefer.index(device.id) if device.id in prefer else len(prefer), device.load, device.id)

        order = [d.id for d in sorted(live, key=rank)]
        place = order.index(eng.device) if eng.device in order else len(order)
        first_free = self.free_since.setdefault(job.name, eng.loop.boot)
        return eng.loop.boot - first_free >= place * self.ttl / 3

    def _wanted(self, job) -> bool:
        """This device may run the job now: enabled here, eligible, not stopped by a user."""
        life = job.life
        return life.is_enabled and not life.ineligible and not life.held and not self.engine.shutting_down

    def _stand_by(self, job, why: str) -> None:
        if job.life.standby != why and job.name not in self.held:
            self.engine.handle(job, lc.LeaseLost(why=why))

    # ================================================================ fencing
    def _deadline(self, job, held: Held) -> float:
        """When the copy must be gone (boot clock): before the lease can expire."""
        return held.sent + self.ttl * (1 - MARGIN) - self._stop_budget(job)

    def _stop_budget(self, job) -> float:
        return min(job.spec.stop_timeout, self.ttl / 3)

    def _arm_fence(self, job, held: Held) -> None:
        """This daemon stops the copy by its deadline; the fence kills it at the lease's."""
        if held.fence is not None:
            held.fence.cancel()
        held.fence = self.engine.loop.call_at(self._deadline(job, held), self._fence_due, job.name)
        for active in job.runs.values():
            self.watching(job, active)

    def spawning(self, job, mark: str) -> None:
        """A copy of a fleet job is about to be spawned with `mark` in its environment: the
        fence kills whatever carries it at the lease's end (a daemon frozen right after the
        spawn has no pid to give)."""
        held = self.held.get(job.name)
        if held is not None and job.spec.scope == "fleet":
            self._arm(job, _key(job.name, mark.encode()), 0, 0, None, mark)

    def watching(self, job, active) -> None:
        """A copy of a fleet job runs (spawned or adopted): the fence kills it at the lease's
        end unless renewed first."""
        proc = active.proc
        if job.name in self.held and proc is not None:
            mark = None if proc.mark is None else proc.mark.decode(errors="replace")
            self._arm(job, _key(job.name, proc.mark, proc.pid), proc.pid, proc.start_ticks or 0, proc.cgroup, mark)

    def _arm(self, job, key: str, pid: int, ticks: int, cgroup_path: str | None, mark: str | None) -> None:
        deadline = self.held[job.name].sent + self.ttl * (1 - MARGIN)
        try:
            self.fence().arm(key, pid, ticks, cgroup_path, deadline, mark)
        except OSError as exc:   # without its fence the copy still stops in time, as long as we run
            self.engine.event("fence_unreachable", job.name, str(exc))

    def ended(self, job, mark: bytes | None, pid: int | None = None) -> None:
        """A copy ended (or was never spawned: pid None): nothing left for the fence."""
        if self._fence is not None and job.spec.scope == "fleet":
            try:
                self._fence.disarm(_key(job.name, mark, pid))
            except OSError:
                pass

    def fence(self):
        if self._fence is None:
            from ..supervisor.fence import FenceClient

            self._fence = FenceClient(str(self.engine.home), self.engine.processes.start_helper)
        return self._fence

    def resume(self, job, run) -> bool:
        """A copy the last daemon left running, under the lease epoch `run.epoch`: renew that
        lease (this device still holds it) and run on, else it stops as a lost lease."""
        eng = self.engine
        if run.epoch is None:
            return False
        sent = eng.loop.boot
        try:
            lease = eng.store.renew_lease(job.name, eng.device, run.epoch, self.ttl)
        except StoreError as exc:
            eng.recorder.failed(exc)
            return False
        if lease is None:
            return False
        held = self.held[job.name] = Held(lease, sent)
        self._arm_fence(job, held)
        eng.handle(job, lc.LeaseGranted())
        return True

    def _fence_due(self, name: str) -> None:
        held, job = self.held.get(name), self.engine.jobs.get(name)
        if held is not None and job is not None:
            self._lose(job, held, "its lease could not be renewed in time")

    def _at_risk(self, job, held: Held, why: str) -> None:
        """A renewal failed: stop now if the next one would come too late."""
        if self.engine.loop.boot + self.ttl / 3 >= self._deadline(job, held):
            self._lose(job, held, why)

    def _lose(self, job, held: Held, why: str) -> None:
        eng = self.engine
        if held.fence is not None:
            held.fence.cancel()
        self.held.pop(job.name, None)
        eng.event("lease_lost", job.name, f"{why}; stopping its copy (epoch {held.lease.epoch})")
        eng.handle(job, lc.LeaseLost(why=why))
        deadline = held.sent + self.ttl * (1 - MARGIN)
        eng.runs.kill_by(job, deadline)

    def _release(self, name: str, held: Held) -> None:
        """Give up a lease this device no longer wants, once the copy has stopped."""
        eng = self.engine
        job = eng.jobs.get(name)
        if job is not None and job.runs:
            return   # still stopping: renewed meanwhile, released once gone
        if held.fence is not None:
            held.fence.cancel()
        self.held.pop(name, None)
        try:
            eng.store.release_lease(name, eng.device, held.lease.epoch)
        except StoreError as exc:   # it expires by itself
            eng.recorder.failed(exc)

    def release_all(self) -> None:
        """At shutdown, every copy gone: let another device take the fleet jobs at once."""
        for name, held in list(self.held.items()):
            self._release(name, held)

    # ================================================================ what changed in the database
    def on_change(self, tables: frozenset) -> None:
        if "fleet_jobs" in tables:
            self.converge()
        if "leases" in tables:
            self.acquire()
        if "commands" in tables:
            self.take_commands()
            self.answer_routed()

    def publish(self, cfg):
        """`aios apply` in a fleet: the file's jobs (but this device's own, local = true)
        become the fleet's next version; every device converges on it (this one too, from
        the Config returned)."""
        from .. import config

        eng = self.engine
        tables = {name: table for name, table in cfg.sources.items() if table.get("local") is not True}
        self.version = eng.store.publish_jobs(tables, eng.device)
        eng.event("fleet_published", None, f"fleet jobs version {self.version}: {len(tables)} job(s)")
        return config.with_fleet(cfg, tables)

    def converge(self) -> None:
        """Run the newest published jobs (with this device's own)."""
        from .. import config
        from .reconcile import reconcile

        eng = self.engine
        try:
            version, tables = eng.store.fleet_jobs()
        except StoreError as exc:
            return eng.recorder.failed(exc)
        if version == self.version or version == 0:
            return None
        cfg = config.with_fleet(config.load(eng.home, cache=True), tables)
        self.version = version
        diff = reconcile(eng, cfg)
        eng.event("fleet_converged", None, f"fleet jobs version {version}: "
                  + ", ".join(f"{k}: {len(v)}" for k, v in diff.items()))
        return None

    # ================================================================ routed operations
    ROUTABLE = ("start", "stop", "restart", "enable", "disable", "run", "signal")

    def route(self, device: str, op: str, fields: dict, reply) -> None:
        """Send `op` to the daemon of `device`; reply(its outcome) once it answers."""
        eng = self.engine
        command_id = eng.store.send_command(device, op, fields, sender=eng.device)
        deadline = eng.loop.call_later(ROUTE_PATIENCE, self._routed_timeout, command_id, device)
        self.routed[command_id] = (reply, deadline)

    def answer_routed(self) -> None:
        eng = self.engine
        for command_id, (reply, deadline) in list(self.routed.items()):
            try:
                command = eng.store.get_command(command_id)
            except StoreError:
                continue
            if command is not None and command.outcome is not None:
                deadline.cancel()
                del self.routed[command_id]
                reply(command.outcome)

    def _routed_timeout(self, command_id: int, device: str) -> None:
        from .operations import OperationError

        waiting = self.routed.pop(command_id, None)
        if waiting is not None:
            waiting[0](OperationError(f"device {device!r} did not answer within {ROUTE_PATIENCE:g} s "
                                      "(is its daemon running? `aios fleet` shows its last heartbeat)"))

    def take_commands(self) -> None:
        eng = self.engine
        try:
            commands = eng.store.take_commands(eng.device)
        except StoreError as exc:
            return eng.recorder.failed(exc)
        for command in commands:
            outcome = self._carry_out(command)
            try:
                eng.store.finish_command(command.id, outcome)
            except StoreError as exc:
                eng.recorder.failed(exc)
        return None

    def _carry_out(self, command) -> str:
        from ..errors import AiosError

        ops, fields = self.engine.ops, command.fields
        if command.op not in self.ROUTABLE:
            return f"error: {command.op!r} cannot be routed; use one of {', '.join(self.ROUTABLE)}"
        try:
            method = ops.run_now if command.op == "run" else getattr(ops, command.op)
            args = (fields["job"], fields["signal"]) if command.op == "signal" else (fields["job"],)
            method(*args)
        except (AiosError, KeyError) as exc:
            return f"error: {exc}"
        self.engine.event("routed", fields.get("job"), f"{command.op} asked by {command.sender or '?'}")
        return "ok"


def _key(name: str, mark: bytes | None, pid: int | None = None) -> str:
    """The fence's name for one copy: by its run token, which is known before its pid."""
    return f"{name}:{mark.partition(b'=')[2].partition(b'.')[0].decode()}" if mark else f"{name}:{pid}"


def _version() -> str:
    from .. import __version__

    return __version__
