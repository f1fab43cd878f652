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

LOG_RECHECK = 1.0        # a chatty job's log size is checked at most this often...
LOG_MIN_RECHECK = 0.01   # ...unless it grows so fast that it would pass max_size many times over
LOG_REPORT_EVERY = 10.0  # log_rotated events of one log, at most once in this many seconds
STORE_POLL = 0.1         # where inotify is missing, look for store changes this often
STORE_SETTLE = (0.005, 0.02, 0.1, 0.5)   # a write to the store not visible yet: look again after these


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
    engine.lock_fd, engine.unclean = (inherited[0], True) if inherited else _lock(home)
    cfg = _load_config(home)
    engine.settings, engine.device, engine.tables = cfg.settings, cfg.settings.device_id, cfg.tables
    engine.store = open_store(str(home / "orchestrator.db"), engine.device)
    if engine.force and not engine.reexecuted:
        engine.store.clear_states()
        dropped = engine.store.clear_triggers()
        engine._log(f"--force: cleared job state and {dropped} pending trigger(s)")
    engine._write(engine.store.save_specs, cfg.tables)
    _build_jobs(engine, cfg)
    engine.loop.tick()
    engine.started = engine.quiet_since = engine.loop.wall
    signums = SHUTDOWN_SIGNALS + (() if supervisor.HAS_PIDFD else (signal.SIGCHLD,))
    engine.loop.watch_signals(signums, engine.on_signal)
    # No batch around what follows: each run is recorded before its process is spawned
    # (see Engine._launch), which one transaction for the whole start-up would undo.
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
    engine.on_caught_up = lambda: _on_store_changed(engine, anyway=True)
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
        engine.flush_writes()
        engine.store.close()
    engine.loop.restore_signals()
    engine.loop.close()
    if engine.lock_fd is not None:
        if not any(job.active for job in engine.jobs.values()):
            os.ftruncate(engine.lock_fd, 0)   # a clean exit: the next start need not look for leftovers
        os.close(engine.lock_fd)


# ---------------------------------------------------------------- re-exec and readiness

def _reexec(engine: Engine) -> None:
    """Replace this process's code with a fresh copy of the daemon, keeping its pid, its
    children, the pid lock and the listening socket (clients wait in its backlog)."""
    engine._event("daemon_reexec", None, f"re-executing pid {os.getpid()}; {len(engine.jobs)} jobs keep running")
    engine.flush_writes()
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


def _lock(home: Path) -> tuple[int, bool]:
    """Hold an exclusive lock on aios.pid for the daemon's lifetime (the kernel drops it
    when the daemon dies, even by SIGKILL). Returns the fd and whether the last daemon
    died without a clean exit (it left its pid in the file; `finish` empties it)."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True, mode=0o750)
    fd = os.open(home / "aios.pid", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(f"another AIOS daemon (pid {other}) is already running for {home}") from None
    unclean = bool(os.read(fd, 32).strip())
    mine = f"{os.getpid()}\n".encode()
    try:   # overwritten, never emptied: a daemon killed right now still leaves the mark
        os.pwrite(fd, mine, 0)
        os.ftruncate(fd, len(mine))
    except OSError:   # a full disk: the lock is what matters, the pid is for people
        pass
    return fd, unclean


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
    whose runs were not adopted go back to the queue (at least once).

    After a daemon died without a clean exit, /proc is also searched for job processes of
    this home that no record names (killed between a spawn and the record of its pid, or
    while the store was failing): a run whose pid was never written is matched by the
    AIOS_RUN_ID its process carries, and a process of no recorded run is adopted as a new
    run. Either way the job is not started a second time beside it."""
    strays = _strays(engine) if engine.unclean else {}
    kept, runs = set(), engine.store.open_runs()
    known = {str(run.id) for run in runs}
    for run in runs:
        job = engine.jobs.get(run.job)
        if run.pid is None and str(run.id) in strays:
            pid, ticks, _ = strays[str(run.id)]
            run = replace(run, pid=pid, pid_start=ticks)
            engine._write(engine.store.set_run_pid, run.id, pid, ticks)
        proc = supervisor.adopt(run.pid, run.pid_start) if run.pid and run.pid_start else None
        if proc is None or job is None:
            _lost(engine, run, proc)
            continue
        _adopt(engine, job, run, proc)
        if run.trigger_id is not None:
            kept.add(run.trigger_id)
    for run_id, (pid, ticks, name) in strays.items():
        if run_id not in known and not (run_id.isdigit() and engine.store.get_run(int(run_id))):
            _adopt_unrecorded(engine, name, pid, ticks)
    engine._write(_release_claims, engine, kept)


def _release_claims(engine: Engine, kept: set) -> None:
    released = engine.store.release_claims(keep=kept)
    if released:
        engine._event("triggers_requeued", None, f"{released} trigger(s) cut short by the last daemon queued again")


def _strays(engine: Engine) -> dict[str, tuple[int, int, str]]:
    """AIOS_RUN_ID -> (pid, start ticks, job) of the live job processes of this home and
    device (process-group leaders only: a job's own children are not copies of it)."""
    marks = {"AIOS_HOME": str(engine.home), "AIOS_DEVICE_ID": engine.device}
    found: dict = {}
    for pid, ticks, env in sorted(supervisor.find_leaders(marks, ("AIOS_JOB", "AIOS_RUN_ID")),
                                  key=lambda leader: leader[1]):
        run_id = env.get("AIOS_RUN_ID", "")
        if "AIOS_JOB" in env and pid != os.getpid():   # the oldest process of a run is its own
            found.setdefault(run_id if run_id.isdigit() else f"pid {pid}", (pid, ticks, env["AIOS_JOB"]))
    return found


def _adopt_unrecorded(engine: Engine, name: str, pid: int, ticks: int) -> None:
    """A job process no run records (its record was never written): adopt it as a new run,
    or stop it if its job is gone from the configuration."""
    from .spec import Run

    proc = supervisor.adopt(pid, ticks)
    job = engine.jobs.get(name)
    if proc is None:
        return
    if job is None or pid in job.active:
        if job is None:
            supervisor.signal_group(proc, signal.SIGTERM)
        supervisor.close(proc)
        return
    run = Run(job=name, started=engine.loop.wall, device=engine.device, pid=pid, pid_start=ticks)
    run = engine._record_start(run)
    engine._event("run_unrecorded", name, f"pid {pid} was running with no record of its run; adopting it")
    _adopt(engine, job, run, proc)
    if run.id is None:
        engine._write(engine._insert_run, job.active[pid])


def _lost(engine: Engine, run, proc) -> None:
    if proc is not None:  # still running but its job is gone from the configuration
        supervisor.signal_group(proc, signal.SIGTERM)
        supervisor.close(proc)
    engine._write(engine.store.finish_run, replace(run, ended=engine.loop.wall, outcome=Outcome.LOST))
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
    engine.loop.add_reader(watcher.fileno(), _on_fs_events, engine, watcher, home_wd, StoreWatch(engine))


def _poll_store(engine: Engine) -> None:
    if not engine.shutting_down:
        _on_store_changed(engine)
        engine.loop.call_later(STORE_POLL, _poll_store, engine)


def _on_fs_events(engine: Engine, watcher, home_wd: int, store_watch: StoreWatch) -> None:
    store_touched = False
    for wd, _mask, name in watcher.read():
        if wd == home_wd:
            store_touched = store_touched or name.startswith("orchestrator.db")
        else:
            engine.log_guard.on_event(wd)
    if store_touched:
        store_watch.touched()


class StoreWatch:
    """Another process's commit is visible a moment after inotify reports its write to the
    WAL file: the commit ends by updating the WAL index through shared memory, which no
    file event reports. So a write that shows no change yet is looked at again a few times
    (STORE_SETTLE), or its rows would wait for the next write to be noticed."""

    def __init__(self, engine: Engine):
        self.engine, self.timer = engine, None

    def touched(self, step: int = 0) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not _on_store_changed(self.engine) and step < len(STORE_SETTLE) and not self.engine.shutting_down:
            self.timer = self.engine.loop.call_later(STORE_SETTLE[step], self.touched, step + 1)


def _on_store_changed(engine: Engine, anyway: bool = False) -> bool:
    """Re-read the trigger queue when another process wrote the store (or `anyway`);
    False if no change was seen."""
    from .store import StoreError

    try:
        if engine.shutting_down or not (engine.store.changed() or anyway):
            return False
        counts = engine.store.pending_counts()
    except StoreError as exc:
        engine._store_failed(exc)
        return False
    for name, count in counts.items():
        if name in engine.jobs:
            engine.pending[name] = count
            engine._consider(engine.jobs[name])
    _handle_control_rows(engine, counts)
    return True


def _handle_control_rows(engine: Engine, counts: dict | None = None) -> None:
    """Rows of the original control path: RESTART_ALL, RESTART_<job>, and triggers naming
    jobs that do not exist (rejected, so they do not wait forever)."""
    from .store import StoreError

    if engine._store_failing:
        return
    counts = engine.pending if counts is None else counts
    for name in [n for n, c in counts.items() if c and n not in engine.jobs]:
        try:
            while (trig := engine.store.claim_trigger(name, engine.loop.wall)) is not None:
                outcome = _control_row(engine, name)
                engine._write(engine.store.finish_trigger, trig.id, outcome, engine.loop.wall)
                engine._event("control_row", None, f"trigger {trig.id} {name}: {outcome}")
        except StoreError as exc:   # handled once the store works again (Engine._caught_up)
            return engine._store_failed(exc)
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
    write after arming; we rotate if needed and re-arm a while later. The wait adapts to
    how fast the log grows: LOG_RECHECK seconds for a slow writer, down to LOG_MIN_RECHECK
    for one that would otherwise fill max_size many times over in between (a job writing
    hundreds of MB a second), so a log passes max_size by at most what its job writes in
    about LOG_MIN_RECHECK seconds. A silent job costs nothing; a chatty one a stat() a
    second; a flood at most 1 / LOG_MIN_RECHECK checks a second. `log_rotated` is
    reported at most every LOG_REPORT_EVERY seconds per log. Without inotify, the logs of
    running jobs are checked every LOG_RECHECK * 5 seconds."""

    def __init__(self, engine: Engine, watcher):
        self.engine, self.watcher = engine, watcher
        self.paths: dict[int, str] = {}
        self.seen: dict[str, tuple[float, int]] = {}        # path -> (when, size) at the last check
        self.reported: dict[str, tuple[float, int]] = {}    # path -> (last report, rotations since)
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
        self.engine.loop.call_later(self._check(path), self.arm, path)
        return True

    def _sweep(self) -> None:
        for job in self.engine.jobs.values():
            if job.active:
                self._check(str(self.engine.log_path(job.spec.name)))
        if not self.engine.shutting_down:
            self.engine.loop.call_later(LOG_RECHECK * 5, self._sweep)

    def _check(self, path: str) -> float:
        """Rotate the log if it passed max_size; return how soon to look at it again."""
        from . import logs

        settings, now = self.engine.settings, self.engine.loop.mono
        try:
            size = os.stat(path).st_size
            rotated = logs.rotate_if_needed(path, settings.log_max_bytes, settings.log_keep)
        except OSError as exc:   # e.g. no space left for the copy: say so, look again later
            self._report(path, now, f"could not rotate: {exc}")
            return LOG_RECHECK
        if rotated:
            self._report(path, now, f"passed {settings.log_max_bytes} bytes; rotated")
        last, self.seen[path] = self.seen.get(path), (now, 0 if rotated else size)
        if last is None or now - last[0] > 2 * LOG_RECHECK:
            return LOG_MIN_RECHECK   # the first write in a while: look again soon to learn the pace
        grown = size - last[1]
        if grown <= 0:
            return LOG_RECHECK
        room = settings.log_max_bytes - self.seen[path][1]
        return min(LOG_RECHECK, max(LOG_MIN_RECHECK, 0.5 * room * (now - last[0]) / grown))

    def _report(self, path: str, now: float, message: str) -> None:
        last, count = self.reported.get(path, (None, 0))
        if last is not None and now - last < LOG_REPORT_EVERY:
            self.reported[path] = (last, count + 1)
            return
        self.reported[path] = (now, 0)
        more = f" ({count} more time(s) in the last {now - last:.0f} s)" if count else ""
        self.engine._event("log_rotated", Path(path).stem, message + more)
