"""What a user may ask of the engine, as the control socket exposes it: start, stop,
restart, enable, disable, signal, reload, trigger, run, wait, status, history, events,
triggers, apply, reexec.

Each operation checks its arguments, raising OperationError with a one-line reason, and
passes a request to the lifecycle table through the engine's one door (`handle`). The
control server is given this object (it reads `loop` and `watchers` from it). Part of
the engine.
"""
from __future__ import annotations

import os

from .. import lifecycle as lc
from ..spec import AiosError, JobType, plain

class OperationError(AiosError):
    """The operation cannot be done; the message says why."""


class Operations:
    def __init__(self, engine):
        self.engine = engine
        self.loop, self.watchers, self.waiters = engine.loop, engine.watchers, engine.waiters
        self._acks: list = []       # (job, args, kwargs, reply) of this loop turn, committed together

    def job(self, name: str):
        try:
            return self.engine.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.engine.jobs)) or "none"
            shown = repr(name) if len(name) <= 64 else repr(name[:60]) + "..."
            why = self.engine.invalid.get(name)
            if why:
                raise OperationError(f"job {shown} is not running its table: {why}") from None
            raise OperationError(f"no job named {shown} (known: {known})") from None

    def named(self, name: str) -> list:
        """The job called `name`, or else every copy of the job `name` (instances), in order."""
        jobs = self.engine.jobs
        if name in jobs:
            return [jobs[name]]
        copies = sorted((job for job in jobs.values() if job.spec.instance_of == name), key=lambda j: j.spec.instance)
        return copies or [self.job(name)]

    # ================================================================ acting on jobs
    # Each takes a job's name, or the name of a job with `instances` for all its copies.
    def start(self, name: str) -> None:
        """Start a stopped or failed job (an always job runs; others wait for their time)."""
        self._each(name, lc.Start(), check=True)

    def stop(self, name: str) -> None:
        """Stop a job's processes; it stays stopped until started (a re-exec keeps that)."""
        self._each(name, lc.Stop())

    def restart(self, name: str) -> None:
        """Stop the job's processes and start it again at once."""
        self._each(name, lc.Restart(), check=True)

    def enable(self, name: str) -> None:
        """Persistently enable a job and start it as its type says."""
        self._each(name, lc.Enable())

    def disable(self, name: str) -> None:
        """Persistently disable a job, stopping its processes."""
        self._each(name, lc.Disable())

    def _each(self, name: str, event, check: bool = False) -> None:
        jobs = self.named(name)
        for job in jobs if check else ():
            self._require_runnable(job)
        for job in jobs:
            self.engine.handle(job, event)

    def run_now(self, name: str) -> None:
        """Run a scheduled or idle job once now (never beside a run of its own)."""
        job = self.job(name)
        if job.spec.type in (JobType.ALWAYS, JobType.TRIGGER):
            kind = "an always job; use start or restart" if job.spec.type is JobType.ALWAYS else \
                "a trigger job; use trigger"
            raise OperationError(f"job {name!r} is {kind}")
        self._require_runnable(job)
        if job.runs:
            raise OperationError(f"job {name!r} is already running (pid {next(iter(job.runs))})")
        self.engine.handle(job, lc.RunNow())

    def signal(self, name: str, signal_name: str) -> list[int]:
        """Send a signal to every process group of the job (e.g. HUP to reload); the pids."""
        from ..spec import SpecError, parse_signal

        jobs = self.named(name)
        try:
            sig = parse_signal(signal_name, "signal")
        except SpecError as exc:
            raise OperationError(str(exc)) from None
        return self._send(name, [(job, sig) for job in jobs], "signalled")

    def reload(self, name: str) -> list[int]:
        """Send the job's reload_signal to every process group of it; the pids."""
        jobs = self.named(name)
        if any(job.spec.reload_signal is None for job in jobs):
            raise OperationError(f"job {name!r} has no reload_signal; use `aios restart {name}`, or set "
                                 "reload_signal = \"HUP\" in its table if the program reloads on a signal")
        return self._send(name, [(job, job.spec.reload_signal) for job in jobs], "reloaded")

    def _send(self, name: str, targets: list, event: str) -> list[int]:
        import signal

        sent = []
        for job, sig in targets:
            pids = [pid for pid, active in sorted(job.runs.items()) if self.engine.processes.signal(active.proc, sig)]
            if pids:
                self.engine.event(event, job.name, f"{signal.Signals(sig).name.removeprefix('SIG')} sent to "
                                  "pid(s) " + ", ".join(map(str, pids)))
            sent += pids
        if not sent:
            raise OperationError(f"job {name!r} has no running process to signal")
        return sent

    def _require_runnable(self, job) -> None:
        if job.life.ineligible:
            raise OperationError(f"job {job.name!r} does not run on this device: {job.life.ineligible}")
        if not job.life.is_enabled:
            raise OperationError(f"job {job.name!r} is disabled; enable it first")

    # ================================================================ triggers
    def trigger(self, name: str, args=(), kwargs=None, reply=None, target: str | None = None) -> int | None:
        """Queue a run of `name` with args/kwargs (for the one device `target` of a fleet).
        Without `reply`, it is on disk when this returns its id; with `reply`, the triggers
        of one loop turn are committed together (one flush to disk for all) and reply(id)
        comes after that commit."""
        from .planner import refusal

        eng = self.engine
        if target is not None and target != eng.device:
            self._fleet()
            return self._queue(name, args, kwargs, reply, target)
        job = self.job(name)
        problem = refusal(job.spec, args, kwargs)
        if problem:
            raise OperationError(problem)
        if eng.recorder.failing:   # acknowledge nothing the store may not keep
            raise OperationError(f"trigger of {name!r} refused: the state database is failing "
                                 f"({eng.recorder.failure}); try again when it works")
        return self._queue(name, args, kwargs, reply, target)

    def _queue(self, name: str, args, kwargs, reply, target: str | None) -> int | None:
        eng = self.engine
        if reply is None:
            trig = eng.store.add_trigger(name, list(args), dict(kwargs or {}), eng.loop.wall, target)
            self._queued(name, trig.id)
            return trig.id
        if not self._acks:
            eng.loop.call_later(0, self._commit_acks)   # at the end of this loop turn
        self._acks.append((name, list(args), dict(kwargs or {}), reply, target))
        return None

    def _commit_acks(self) -> None:
        """Commit the triggers of this turn in one durable transaction, then acknowledge each."""
        from ..store import StoreError

        eng, acks, self._acks = self.engine, self._acks, []
        try:
            with eng.store.batch(durable=True):
                ids = [eng.store.add_trigger(name, args, kwargs, eng.loop.wall, target).id
                       for name, args, kwargs, _, target in acks]
        except StoreError as exc:
            reason = str(exc).split(" failed: ", 1)[-1]
            for name, _, _, reply, _ in acks:
                reply(OperationError(f"adding a trigger of {name!r} failed: {reason}"))
            return
        for (name, _, _, reply, _), trigger_id in zip(acks, ids):
            self._queued(name, trigger_id)
            reply(trigger_id)

    def _queued(self, name: str, trigger_id: int) -> None:
        """A trigger is on disk: this device's job (if it has it) takes it up; another
        device hears of it from the database."""
        eng = self.engine
        eng.event("trigger_added", name if name in eng.jobs else None, f"trigger {trigger_id} of {name!r} queued")
        if name in eng.jobs:
            eng.handle(eng.jobs[name], lc.Queued(count=1, added=True))

    def wait_trigger(self, trigger_id: int, reply) -> None:
        """Call reply(result) once the trigger is done (at once if it already is: run, rejected
        or dropped)."""
        from .core import trigger_result

        store = self.engine.store
        trig = store.get_trigger(trigger_id)
        if trig is None:
            raise OperationError(f"no trigger with id {trigger_id}")
        if trig.done:
            reply(trigger_result(trig.id, trig.outcome, trig.run_id and store.get_run(trig.run_id)))
        else:
            self.engine.waiters.setdefault(trigger_id, []).append(reply)

    def triggers(self, job: str | None, limit: int) -> list[dict]:
        """Queued triggers, oldest first, with why each waits."""
        eng = self.engine
        out = []
        for trig in eng.store.pending_triggers(job, limit):
            item = plain(trig)
            item["why"] = self._waits_because(trig.job)
            out.append(item)
        return out

    def _waits_because(self, name: str) -> str:
        eng = self.engine
        if name in eng.jobs:
            return eng.jobs[name].state.why or eng.jobs[name].state.status.value
        if name in eng.invalid:
            return f"job {name!r} is invalid in aios.toml: {eng.invalid[name]}"
        return f"no job named {name!r} in aios.toml"

    def drop_triggers(self, job: str, trigger_id: int | None = None) -> int:
        """Mark queued triggers of `job` (or one) done as "dropped": the only way acknowledged
        work leaves the queue without running."""
        eng = self.engine
        dropped = eng.store.drop_triggers(job, trigger_id, eng.loop.wall)
        if dropped:
            eng.event("triggers_dropped", job if job in eng.jobs else None, f"{dropped} trigger(s) of {job!r} dropped")
            eng.planner.refresh_queue(anyway=True)
        return dropped

    # ================================================================ reading
    def ping(self) -> dict:
        from .. import __version__

        eng = self.engine
        return {"pid": os.getpid(), "version": __version__, "home": str(eng.home), "device": eng.device,
                "started": eng.started, "jobs": len(eng.jobs)}

    def about(self) -> dict:
        import sys

        times = os.times()
        return {**self.ping(), "python": sys.version.split()[0], "tags": sorted(self.engine.settings.tags),
                "rss_kib": _rss_kib(), "cpu_seconds": times.user + times.system,
                "store": self.engine.recorder.failure or "ok", "containment": self.engine.containment}

    def dashboard_token(self) -> str:
        """The dashboard's token ([web] token, else HOME/dashboard.token, made on first use)."""
        from ..home import dashboard_token

        return dashboard_token(self.engine.home, self.engine.settings.web_token)

    def job_detail(self, name: str) -> dict:
        """A job's status, its aios.toml table, and its log file's path."""
        job = self.job(name)
        return {"status": self.engine.describe(job, log_tail=True), "spec": self.engine.tables.get(name, {}),
                "log": str(self.engine.log_path(name))}

    def status(self, name: str | None = None) -> list[dict]:
        """One plain dict per job (or for one job); then the jobs that do not run as written
        (an invalid table) and the names that triggers wait for but no job has."""
        eng = self.engine
        if name is not None and name not in eng.jobs and (name in eng.invalid or name in eng.orphans):
            return [row for row in self._absent() if row["name"] == name]
        if name is not None:
            return [eng.describe(job, log_tail=True) for job in self.named(name)]
        return [eng.describe(job, log_tail=True) for job in eng.jobs.values()] + self._absent()

    def _absent(self) -> list[dict]:
        eng, rows = self.engine, []
        for name in sorted(set(eng.invalid) | set(eng.orphans)):
            if name in eng.jobs:
                continue
            queued = eng.orphans.get(name, 0)
            why = (f"invalid in aios.toml: {eng.invalid[name]}" if name in eng.invalid
                   else "no such job in aios.toml")
            if queued:
                why += f"; {queued} trigger(s) wait for it (fix the job, or `aios triggers drop {name}`)"
            rows.append({"name": name, "type": eng.tables.get(name, {}).get("type", "?"),
                         "status": "invalid" if name in eng.invalid else "missing", "why": why, "pid": None,
                         "pids": [], "uptime": None, "restarts": 0, "next_due": None, "tags": [],
                         "enabled": False, "held": False, "queued": queued, "last_run": None})
        return rows

    def history(self, job: str | None, limit: int) -> list[dict]:
        return [plain(run) for run in self.engine.store.recent_runs(job, limit)]

    def events(self, job: str | None, limit: int, after_id: int | None) -> list[dict]:
        return [plain(e) for e in self.engine.store.recent_events(limit, job, after_id)]

    # ================================================================ the fleet
    def _fleet(self):
        from ..store import FleetError

        if self.engine.fleet is None:
            raise OperationError(FleetError.__doc__)
        return self.engine.fleet

    def fleet_view(self) -> dict:
        """This device, the fleet jobs' version it runs, every device and every lease."""
        eng, fleet = self.engine, self._fleet()
        return {"device": eng.device, "version": fleet.version, "ttl": fleet.ttl,
                "devices": [plain(d) for d in eng.store.devices()],
                "leases": [plain(lease) for lease in eng.store.leases()]}

    def fleet_status(self) -> list[dict]:
        """Every job of every device, as its device last stored it (status --fleet)."""
        self._fleet()
        rows = []
        for device, states in self.engine.store.fleet_states().items():
            for state in states.values():
                rows.append({"device": device, "name": state.job, "status": state.status.value, "why": state.why,
                             "pid": state.pid, "since": state.since, "next_due": state.next_due,
                             "restarts": state.restarts})
        return rows

    def route(self, device: str, request: dict, reply) -> None:
        """Carry out `request` ({"op": ..., "job": ...}) on `device`'s daemon; reply its answer."""
        fleet = self._fleet()
        op = request.get("op")
        if op not in fleet.ROUTABLE:
            raise OperationError(f"op {op!r} cannot be routed to another device; use one of "
                                 + ", ".join(fleet.ROUTABLE))
        fields = {k: v for k, v in request.items() if k != "op"}

        def answered(outcome) -> None:
            failed = isinstance(outcome, Exception) or outcome != "ok"
            reply(outcome if isinstance(outcome, Exception) else
                  OperationError(f"{device}: {outcome.removeprefix('error: ')}") if failed else "ok")
        fleet.route(device, op, fields, answered)

    # ================================================================ the daemon itself
    def request_reexec(self) -> dict:
        """Leave the loop so the daemon can exec a fresh copy of itself (same pid)."""
        if self.engine.shutting_down:
            raise OperationError("the daemon is shutting down")
        self.engine.request_reexec()
        return {"pid": os.getpid()}

    def shutdown(self, why: str) -> None:
        self.engine.shutdown(why)

    def apply(self, text: str | None = None, check: bool = False) -> dict:
        """Load aios.toml again (or `text`, which then replaces it) and bring the running
        jobs in line: start added ones, stop removed ones, restart changed always jobs;
        other changed jobs take their new spec from their next run. A job whose new table
        is invalid keeps running on its previous spec and shows the error. A `text` with
        any error is refused whole (aios.toml and the jobs stay as they were); the file it
        replaces is kept as aios.toml.prev. With `check`, only say what would change."""
        from .. import config
        from .reconcile import changes, reconcile

        eng = self.engine
        cfg = config.load(eng.home, text, cache=text is None and not check)
        moved = cfg.settings.device_id != eng.settings.device_id
        errors = cfg.errors + ([f"the device id changed ({eng.settings.device_id!r} -> {cfg.settings.device_id!r}); "
                                "restart the daemon to change it"] if moved else [])
        plan = changes(eng.tables, cfg)
        if check:
            return {**plan, "errors": errors}
        if moved:
            raise OperationError(errors[-1])
        if text is not None:
            config.require_valid(cfg)
            config.write_config(eng.home, text, backup=True)
        if eng.fleet is not None:
            cfg = eng.fleet.publish(cfg)
        diff = reconcile(eng, cfg)
        eng.event("config_applied", None, ", ".join(f"{k}: {len(v)}" for k, v in diff.items()))
        return {**diff, "fields": plan["fields"], "kept": plan["kept"], "errors": cfg.errors}


def _rss_kib() -> int | None:
    """The daemon's resident memory (VmRSS) in KiB, where /proc has it."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return None
