"""The engine's operations, as the control socket exposes them: start, stop, restart,
enable, disable, trigger, run, status, history, events, apply, wait, reexec.

A mixin of Engine (one object, two files: the engine decides and runs; this is what a
user may ask of it). Every operation validates its arguments and raises OperationError
with a one-line reason; state changes go through the engine's one door, `_set`.
"""
from __future__ import annotations

import os

from .spec import AiosError, JobType, Outcome, Run, Status, plain


class OperationError(AiosError):
    """The operation cannot be done; the message says why."""


class Operations:
    def job(self, name: str):
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(sorted(self.jobs)) or "none"
            shown = repr(name) if len(name) <= 64 else repr(name[:60]) + "..."
            raise OperationError(f"no job named {shown} (known: {known})") from None

    def start(self, name: str) -> None:
        """Start a stopped or failed job (an always job runs; others wait for their time)."""
        job = self.job(name)
        self._require_runnable(job)
        self._set(job, job.state.status, job.state.why, held=False)
        if job.state.status in (Status.FAILED, Status.BACKOFF):
            self._cancel_timer(job)
            self._set(job, Status.STOPPED, "starting on request", attempts=0)
        self._consider(job)

    def stop(self, name: str) -> None:
        """Stop a job's processes; it stays stopped until started (a re-exec keeps that)."""
        self._halt(self.job(name), "stop", Status.STOPPED, "stopped on request", held=True)

    def restart(self, name: str) -> None:
        """Stop the job's processes and start it again at once."""
        job = self.job(name)
        self._require_runnable(job)
        self._set(job, job.state.status, job.state.why, held=False)
        self._cancel_timer(job)
        if job.active:
            self._stop_runs(job, Outcome.STOPPED, "restart")
        else:
            self._set(job, job.state.status, job.state.why, attempts=0)
            self._launch_now(job)

    def enable(self, name: str) -> None:
        """Persistently enable a job and start it as its type says."""
        job = self.job(name)
        self._set(job, job.state.status, job.state.why, enabled=True)
        if job.state.status is Status.DISABLED:
            self._set(job, Status.STOPPED, "enabled")
        self._consider(job)

    def disable(self, name: str) -> None:
        """Persistently disable a job, stopping its processes."""
        self._halt(self.job(name), "disable", Status.DISABLED, "disabled", enabled=False)

    def _halt(self, job, intent: str, status: Status, why: str, **flag) -> None:
        """Record `flag` (held or enabled), then stop the job's processes (the engine
        fulfils `intent` when they have exited) or, with none running, take `status`."""
        self._set(job, job.state.status, job.state.why, **flag)
        self._cancel_timer(job)
        if job.active:
            self._stop_runs(job, Outcome.STOPPED, intent)
        else:
            self._set(job, status, why, next_due=None)

    def trigger(self, name: str, args=(), kwargs=None) -> int:
        """Queue a run of `name` with args/kwargs; durable once this returns its id."""
        job = self.job(name)
        if job.spec.type is JobType.ALWAYS:
            raise OperationError(f"job {name!r} is an always job; it cannot be triggered (use restart)")
        if kwargs and not job.spec.program:
            raise OperationError(f"job {name!r} runs a command, which takes positional arguments only; "
                                 "keyword arguments are for program jobs")
        _check_argument_size(name, args, kwargs)
        trig = self.store.add_trigger(name, list(args), dict(kwargs or {}), self.loop.wall)  # the acknowledgement
        self.pending[name] = self.pending.get(name, 0) + 1
        self._event("trigger_added", name, f"trigger {trig.id} queued")
        self._consider(job)
        return trig.id

    def run_now(self, name: str) -> None:
        """Run a scheduled or idle job once now (never beside a run of its own)."""
        job = self.job(name)
        if job.spec.type in (JobType.ALWAYS, JobType.TRIGGER):
            kind = "an always job; use start or restart" if job.spec.type is JobType.ALWAYS else \
                "a trigger job; use trigger"
            raise OperationError(f"job {name!r} is {kind}")
        self._require_runnable(job)
        if job.active:
            raise OperationError(f"job {name!r} is already running (pid {next(iter(job.active))})")
        self._launch(job, due=self.loop.wall)

    def wait_trigger(self, trigger_id: int, reply) -> None:
        """Call reply(result) once the trigger is done (at once if it already is)."""
        trig = self.store.get_trigger(trigger_id)
        if trig is None:
            raise OperationError(f"no trigger with id {trigger_id}")
        if trig.done:
            reply(self._trigger_result(trig.id, trig.outcome, trig.run_id and self.store.get_run(trig.run_id)))
        else:
            self.waiters.setdefault(trigger_id, []).append(reply)

    def _trigger_result(self, trigger_id: int, outcome: str | None, run: Run | None) -> dict:
        return {"trigger": trigger_id, "outcome": outcome, "run_id": run.id if run else None,
                "exit_code": run.exit_code if run else None, "signal": run.signal if run else None}

    # ---- reading
    def ping(self) -> dict:
        from . import __version__

        return {"pid": os.getpid(), "version": __version__, "home": str(self.home), "device": self.device,
                "started": self.started, "jobs": len(self.jobs)}

    def about(self) -> dict:
        import sys

        times = os.times()
        return {**self.ping(), "python": sys.version.split()[0], "tags": sorted(self.settings.tags),
                "rss_kib": _rss_kib(), "cpu_seconds": times.user + times.system}

    def job_detail(self, name: str) -> dict:
        """A job's status, its aios.toml table, and its log file's path."""
        job = self.job(name)
        return {"status": self._describe(job), "spec": self.tables.get(name, {}),
                "log": str(self.log_path(name))}

    def status(self, name: str | None = None) -> list[dict]:
        """One plain dict per job (or for one job), for status displays."""
        jobs = [self.job(name)] if name is not None else list(self.jobs.values())
        return [self._describe(job) for job in jobs]

    def history(self, job: str | None, limit: int) -> list[dict]:
        return [plain(run) for run in self.store.recent_runs(job, limit)]

    def events(self, job: str | None, limit: int, after_id: int | None) -> list[dict]:
        return [plain(e) for e in self.store.recent_events(limit, job, after_id)]

    def _describe(self, job) -> dict:
        state, spec = job.state, job.spec
        uptime = self.loop.mono - min(a.started for a in job.active.values()) if job.active else None
        return {
            "name": spec.name, "type": spec.type.value, "status": state.status.value,
            "why": state.why, "since": state.since, "pid": state.pid, "pids": sorted(job.active),
            "uptime": uptime, "restarts": state.restarts, "attempts": state.attempts,
            "next_due": state.next_due, "tags": list(spec.tags), "enabled": self._enabled(job),
            "held": state.held, "queued": self.pending.get(spec.name, 0),
            "last_run": plain(job.last_run) if job.last_run else None,
        }

    def _require_runnable(self, job) -> None:
        if not self._eligible(job):
            raise OperationError(f"job {job.spec.name!r} does not run on this device: {job.state.why}")
        if not self._enabled(job):
            raise OperationError(f"job {job.spec.name!r} is disabled; enable it first")

    # ---- the daemon itself
    def request_reexec(self) -> dict:
        """Leave the loop so daemon.serve can exec a fresh copy of the daemon (same pid)."""
        if self.shutting_down:
            raise OperationError("the daemon is shutting down")
        self.reexec_requested = self.stopped = True
        if self.control is not None:
            self.control.pause()  # new connections wait in the backlog for the new image
        return {"pid": os.getpid()}

    def apply(self, text: str | None = None) -> dict:
        """Load aios.toml again (or `text`, which then replaces it) and bring the running
        jobs in line: start added ones, stop removed ones, restart changed always jobs;
        other changed jobs take their new spec from their next run."""
        from . import config

        cfg = config.load(self.home, text, cache=text is None)
        if cfg.settings.device_id != self.settings.device_id:
            raise OperationError(f"the device id changed ({self.settings.device_id!r} -> "
                                 f"{cfg.settings.device_id!r}); restart the daemon to change it")
        if text is not None:
            config.write_config(self.home, text)
        diff = self._apply_specs(cfg.specs)
        self.settings, self.tables = cfg.settings, cfg.tables
        for job in list(self.jobs.values()):
            self._consider(job)
        self.recorder.write(self.store.save_specs, cfg.tables)
        self._event("config_applied", None, ", ".join(f"{k}: {len(v)}" for k, v in diff.items()))
        return {**diff, "errors": cfg.errors}

    def _apply_specs(self, specs: dict) -> dict:
        diff = {"added": [], "removed": [], "changed": [], "unchanged": []}
        for name in [n for n in self.jobs if n not in specs]:
            diff["removed"].append(name)
            self._remove(self.jobs[name])
        stored = None
        for name, spec in specs.items():
            job = self.jobs.get(name)
            if job is None:
                stored = self.store.load_states() if stored is None else stored
                self._add_job(spec, stored.get(name))
                diff["added"].append(name)
            elif job.spec != spec:
                self._change(job, spec)
                diff["changed"].append(name)
            else:
                diff["unchanged"].append(name)
        return diff

    def _remove(self, job) -> None:
        self._cancel_timer(job)
        if job.active:
            self._stop_runs(job, Outcome.STOPPED, "remove")
        else:
            self._set(job, Status.STOPPED, "removed from the configuration", next_due=None)
            del self.jobs[job.spec.name]

    def _change(self, job, spec) -> None:
        job.spec = spec
        if spec.type is JobType.ALWAYS and job.active and not job.intent:
            self._stop_runs(job, Outcome.STOPPED, "restart")
        elif not job.active:
            self._cancel_timer(job)
            if job.state.status in (Status.FAILED, Status.BACKOFF):
                self._set(job, Status.STOPPED, "configuration changed", attempts=0)


def _check_argument_size(name: str, args, kwargs) -> None:
    import json

    size = len(json.dumps([args, kwargs or {}], default=str))
    if size > MAX_ARGUMENT_BYTES:
        raise OperationError(f"trigger of {name!r}: arguments take {size} bytes as JSON; "
                             f"the limit is {MAX_ARGUMENT_BYTES} (pass a file path instead)")


MAX_ARGUMENT_BYTES = 100_000   # program jobs get them as one argv string (Linux: 128 KiB)


def _rss_kib() -> int | None:
    """The daemon's resident memory (VmRSS) in KiB, where /proc has it."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return None
