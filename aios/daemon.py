"""Wires an Engine to the world: the single-daemon lock, the configuration, the store,
adoption of processes a dead daemon left running, signals, store-change and log watches,
and the orderly finish. Part of the engine; imports what the engine may import.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from . import config, supervisor
from .engine import SHUTDOWN_SIGNALS, Active, Engine, Job
from .operations import OperationError
from .spec import AiosError, JobType, Outcome, Status, Trigger, replace
from .store import open_store

LOG_RECHECK = 1.0        # a chatty job's log size is checked at most this often
STORE_POLL = 0.1         # where inotify is missing, look for store changes this often


class AlreadyRunning(AiosError):
    """Another AIOS daemon is running for this home."""


def serve(home: Path, force: bool = False) -> int:
    """Run a daemon for `home` in the foreground until it is shut down (or re-executed)."""
    engine = Engine(home, force=force)
    start(engine)
    try:
        engine.loop.run(until=lambda: engine.stopped)
    finally:
        if engine.reexec_requested:
            _reexec(engine)   # does not return
        finish(engine)
    return 0


def start(engine: Engine) -> None:
    began = time.monotonic()
    home = engine.home
    inherited = _inherited_fds()
    engine.reexecuted = inherited is not None
    engine.lock_fd = inherited[0] if inherited else _lock(home)
    cfg = _load_config(home)
    engine.settings, engine.device, engine.tables = cfg.settings, cfg.settings.device_id, cfg.tables
    engine.store = open_store(str(home / "orchestrator.db"), engine.device)
    if engine.force and not engine.reexecuted:
        engine.store.clear_states()
        dropped = engine.store.clear_triggers()
        engine._log(f"--force: cleared job state and {dropped} pending trigger(s)")
    engine.store.save_specs(cfg.tables)
    _build_jobs(engine, cfg)
    engine.loop.tick()
    engine.started = engine.quiet_since = engine.loop.wall
    signums = SHUTDOWN_SIGNALS + (() if supervisor.HAS_PIDFD else (signal.SIGCHLD,))
    engine.loop.watch_signals(signums, engine.on_signal)
    with engine.store.batch():
        for problem in cfg.errors:
            engine._event("config_error", None, problem)
        _adopt_leftovers(engine)
        engine.pending = engine.store.pending_counts()
        for job in sorted(engine.jobs.values(), key=lambda j: -j.spec.priority):
            engine._consider(job)
        _handle_control_rows(engine)
    from .control import SOCKET_NAME, ControlServer  # after the jobs started: not on their path

    engine.control = ControlServer(engine, str(home / SOCKET_NAME), inherited[1] if inherited else None)
    _watch_store(engine)
    took = (time.monotonic() - began) * 1000
    engine._event("daemon_reexecuted" if engine.reexecuted else "daemon_started", None,
                  f"pid {os.getpid()}, {len(engine.jobs)} jobs, home {home}, ready in {took:.1f} ms")
    _notify_ready(took)


def finish(engine: Engine) -> None:
    """After the loop: every job has exited (or we are failing); release everything."""
    if engine.control is not None:
        engine.control.close()
        _unlink(Path(engine.control.path))
    if engine.store is not None:
        engine._event("daemon_stopped", None, "all jobs stopped")
        engine.store.close()
    engine.loop.restore_signals()
    engine.loop.close()
    if engine.lock_fd is not None:
        os.close(engine.lock_fd)


# ---------------------------------------------------------------- re-exec and readiness

def _reexec(engine: Engine) -> None:
    """Replace this process's code with a fresh copy of the daemon, keeping its pid, its
    children, the pid lock and the listening socket (clients wait in its backlog)."""
    engine._event("daemon_reexec", None, f"re-executing pid {os.getpid()}; {len(engine.jobs)} jobs keep running")
    engine.store.close()
    fds = (engine.lock_fd, engine.control.sock.fileno())
    for fd in fds:
        os.set_inheritable(fd, True)
    os.environ[_INHERIT_ENV] = ",".join(map(str, fds))
    argv = _own_argv()
    os.execv(argv[0], argv)


_INHERIT_ENV = "AIOS_REEXEC_FDS"
_READY_ENV = "AIOS_READY_FD"


def _inherited_fds() -> tuple[int, int] | None:
    """(lock fd, listening socket fd) handed over by the daemon that re-executed us."""
    value = os.environ.pop(_INHERIT_ENV, None)
    if not value:
        return None
    fds = tuple(int(fd) for fd in value.split(","))
    for fd in fds:
        os.set_inheritable(fd, False)
    return fds


def _own_argv() -> list[str]:
    """The command line that started this interpreter, to exec it again."""
    import sys

    if hasattr(sys, "orig_argv"):
        return [sys.executable] + list(sys.orig_argv[1:])
    if sys.argv[0].endswith("__main__.py"):
        return [sys.executable, "-m", "aios"] + sys.argv[1:]
    return [sys.executable] + sys.argv


def _notify_ready(took_ms: float) -> None:
    """Tell `aios up -d`, waiting on an inherited pipe, that the daemon is ready."""
    value = os.environ.pop(_READY_ENV, None)
    if value:
        try:
            os.write(int(value), f"ready {took_ms:.1f}\n".encode())
            os.close(int(value))
        except OSError:
            pass


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _lock(home: Path) -> int:
    """Hold an exclusive lock on aios.pid for the daemon's lifetime (the kernel drops it
    when the daemon dies, even by SIGKILL)."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(home / "aios.pid", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(f"another AIOS daemon (pid {other}) is already running for {home}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _load_config(home: Path):
    if not (home / "aios.toml").exists():
        config.write_default(home)
    return config.load(home, cache=True)


def _build_jobs(engine: Engine, cfg) -> None:
    stored, last = engine.store.load_states(), engine.store.last_runs()
    for name, spec in cfg.specs.items():
        engine._add_job(spec, stored.get(name), last.get(name))


# ---------------------------------------------------------------- adoption

def _adopt_leftovers(engine: Engine) -> None:
    """Runs the previous daemon recorded as started but never saw end: adopt the process if
    it is still the same one (pid and start time), else record the run as lost. Triggers
    whose runs were not adopted go back to the queue (at least once)."""
    kept = set()
    for run in engine.store.open_runs():
        job = engine.jobs.get(run.job)
        proc = supervisor.adopt(run.pid, run.pid_start) if run.pid and run.pid_start else None
        if proc is None or job is None:
            _lost(engine, run, proc)
            continue
        _adopt(engine, job, run, proc)
        if run.trigger_id is not None:
            kept.add(run.trigger_id)
    released = engine.store.release_claims(keep=kept)
    if released:
        engine._event("triggers_requeued", None, f"{released} trigger(s) cut short by the last daemon queued again")


def _lost(engine: Engine, run, proc) -> None:
    if proc is not None:  # still running but its job is gone from the configuration
        supervisor.signal_group(proc, signal.SIGTERM)
        supervisor.close(proc)
    engine.store.finish_run(replace(run, ended=engine.loop.wall, outcome=Outcome.LOST))
    engine._event("run_lost", run.job, f"run {run.id} (pid {run.pid}) ended while no daemon watched it")


def _adopt(engine: Engine, job: Job, run, proc) -> None:
    active = Active(run, proc, None, engine.loop.mono - max(0.0, engine.loop.wall - run.started))
    if run.trigger_id is not None:
        active.trigger = Trigger(job=run.job, id=run.trigger_id)
    engine._watch(job, active)
    if not job.spec.adopt:
        engine._event("adopt_refused", job.spec.name, f"pid {run.pid} left running; adopt = false: stopping it")
        engine._set(job, Status.RUNNING, "left by the previous daemon", pid=run.pid, run_id=run.id)
        engine._stop_runs(job, Outcome.STOPPED, "resume")
        return
    engine._set(job, Status.RUNNING, "" if engine.reexecuted else "adopted after a daemon crash",
                pid=run.pid, run_id=run.id)
    engine._event("job_adopted", job.spec.name, f"pid {run.pid} adopted from the previous daemon")


# ---------------------------------------------------------------- store changes

def _watch_store(engine: Engine) -> None:
    """Wake when another process writes the database (e.g. a row in `triggers`), and when
    a job log grows (LogGuard)."""
    from . import fswatch

    watcher = fswatch.open_watcher()
    engine.log_guard = LogGuard(engine, watcher)
    for job in engine.jobs.values():
        if job.active:
            engine.log_guard.arm(str(engine.log_path(job.spec.name)))
    if watcher is None:
        engine.loop.call_later(STORE_POLL, _poll_store, engine)
        return
    home_wd = watcher.add(str(engine.home), fswatch.IN_MODIFY | fswatch.IN_CREATE | fswatch.IN_MOVED_TO)
    engine.loop.add_reader(watcher.fileno(), _on_fs_events, engine, watcher, home_wd)


def _poll_store(engine: Engine) -> None:
    if not engine.shutting_down:
        _on_store_changed(engine)
        engine.loop.call_later(STORE_POLL, _poll_store, engine)


def _on_fs_events(engine: Engine, watcher, home_wd: int) -> None:
    store_touched = False
    for wd, _mask, name in watcher.read():
        if wd == home_wd:
            store_touched = store_touched or name.startswith("orchestrator.db")
        else:
            engine.log_guard.on_event(wd)
    if store_touched:
        _on_store_changed(engine)


def _on_store_changed(engine: Engine) -> None:
    if engine.shutting_down or not engine.store.changed():
        return
    counts = engine.store.pending_counts()
    for name, count in counts.items():
        if name in engine.jobs:
            engine.pending[name] = count
            engine._consider(engine.jobs[name])
    _handle_control_rows(engine, counts)


def _handle_control_rows(engine: Engine, counts: dict | None = None) -> None:
    """Rows of the original control path: RESTART_ALL, RESTART_<job>, and triggers naming
    jobs that do not exist (rejected, so they do not wait forever)."""
    counts = engine.pending if counts is None else counts
    for name in [n for n, c in counts.items() if c and n not in engine.jobs]:
        while (trig := engine.store.claim_trigger(name, engine.loop.wall)) is not None:
            outcome = _control_row(engine, name)
            engine.store.finish_trigger(trig.id, outcome, engine.loop.wall)
            engine._event("control_row", None, f"trigger {trig.id} {name}: {outcome}")
        engine.pending.pop(name, None)


def _control_row(engine: Engine, name: str) -> str:
    if name == "RESTART_ALL":
        for job in engine.jobs.values():
            if job.spec.type is JobType.ALWAYS and job.state.status not in (Status.DISABLED, Status.INELIGIBLE):
                engine.restart(job.spec.name)
        return "ok"
    if name.startswith("RESTART_"):
        try:
            engine.restart(name[len("RESTART_"):])
        except OperationError as exc:
            return f"rejected: {exc}"
        return "ok"
    return f"rejected: no job named {name!r}"


# ---------------------------------------------------------------- log rotation

class LogGuard:
    """Keeps job logs bounded while jobs write them directly (no pipe through the daemon,
    so jobs outlive a daemon crash): a one-shot inotify watch per log wakes us on the first
    write after arming; we rotate if needed and re-arm LOG_RECHECK seconds later. A silent
    job costs nothing; a chatty one costs one check a second. Without inotify, the logs of
    running jobs are checked every LOG_RECHECK * 5 seconds."""

    def __init__(self, engine: Engine, watcher):
        self.engine, self.watcher = engine, watcher
        self.paths: dict[int, str] = {}
        if watcher is None:
            engine.loop.call_later(LOG_RECHECK * 5, self._sweep)

    def arm(self, path: str) -> None:
        if self.watcher is None:
            return
        from . import fswatch

        try:
            self.paths[self.watcher.add(path, fswatch.IN_MODIFY | fswatch.IN_ONESHOT)] = path
        except OSError:
            pass  # the file vanished; the next spawn arms it again

    def on_event(self, wd: int) -> bool:
        """Handle an event of one of our watches; False if `wd` is not ours."""
        path = self.paths.pop(wd, None)
        if path is None:
            return False
        self._check(path)
        self.engine.loop.call_later(LOG_RECHECK, self.arm, path)
        return True

    def _sweep(self) -> None:
        for job in self.engine.jobs.values():
            if job.active:
                self._check(str(self.engine.log_path(job.spec.name)))
        if not self.engine.shutting_down:
            self.engine.loop.call_later(LOG_RECHECK * 5, self._sweep)

    def _check(self, path: str) -> None:
        from . import logs

        settings = self.engine.settings
        if logs.rotate_if_needed(path, settings.log_max_bytes, settings.log_keep):
            self.engine._event("log_rotated", Path(path).stem, f"passed {settings.log_max_bytes} bytes; rotated")
