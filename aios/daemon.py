"""Wires an Engine to the world: the single-daemon lock, the configuration, the store,
signals, the control socket, the watches, start-up in turns, re-exec, and the orderly
finish. Part of the engine; imports what the engine may import.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from . import config, recovery, supervisor, watches
from .engine import SHUTDOWN_SIGNALS, Engine
from .recorder import Recorder
from .spec import AiosError
from .store import open_store

START_PER_TURN = 10      # jobs started per loop turn at start-up: the control socket answers in between


class AlreadyRunning(AiosError):
    """Another AIOS daemon is running for this home."""


def serve(home: Path, force: bool = False, force_new_db: bool = False) -> int:
    """Run a daemon for `home` in the foreground until it is shut down (or re-executed).
    force_new_db: a bad orchestrator.db is moved aside and a new one begun (store.open_store)."""
    engine = Engine(home, force=force)
    engine.force_new_db = force_new_db
    start(engine)
    try:
        engine.loop.run(until=lambda: engine.stopped)
    finally:
        if engine.reexec_requested:
            _reexec(engine)   # does not return
        finish(engine)
    return 0


def start(engine: Engine) -> None:
    """Open everything, adopt what the last daemon left, start the first jobs, answer on
    the control socket (that is "ready"), then start the other jobs a turn at a time."""
    began = time.monotonic()
    inherited = _inherited_fds()
    cfg = _open(engine, inherited)
    for problem in cfg.errors:
        engine._event("config_error", None, problem)
    recovery.adopt_leftovers(engine)
    engine.pending = engine.store.pending_counts()
    order = sorted(engine.jobs.values(), key=lambda j: -j.spec.priority)
    _consider(engine, order[:START_PER_TURN])   # the first ones before anything else
    from .control import SOCKET_NAME, ControlServer  # after the first jobs: not on their path

    engine.control = ControlServer(engine, str(engine.home / SOCKET_NAME), inherited[1] if inherited else None)
    watches.watch(engine)
    engine.on_caught_up = lambda: watches.on_store_changed(engine, anyway=True)
    took = (time.monotonic() - began) * 1000
    engine._event("daemon_reexecuted" if engine.reexecuted else "daemon_started", None,
                  f"pid {os.getpid()}, {len(engine.jobs)} jobs, home {engine.home}, ready in {took:.1f} ms")
    _notify_ready(took)
    _start_rest(engine, order[START_PER_TURN:])


def _open(engine: Engine, inherited):
    home = engine.home
    engine.reexecuted = inherited is not None
    engine.lock_fd, engine.unclean = (inherited[0], True) if inherited else _lock(home)
    cfg = _load_config(home)
    engine.settings, engine.device, engine.tables = cfg.settings, cfg.settings.device_id, cfg.tables
    engine.base_env = dict(os.environ)
    engine.store = open_store(str(home / "orchestrator.db"), engine.device,
                              force_new=getattr(engine, "force_new_db", False))
    engine.recorder = Recorder(engine.store, engine.loop, engine._log, engine._recovered)
    if engine.force and not engine.reexecuted:
        engine.store.clear_states()
        dropped = engine.store.clear_triggers()
        engine._log(f"--force: cleared job state and {dropped} pending trigger(s)")
    engine.recorder.write(engine.store.save_specs, cfg.tables)
    _build_jobs(engine, cfg)
    engine.loop.tick()
    engine.started = engine.quiet_since = engine.loop.wall
    signums = SHUTDOWN_SIGNALS + (() if supervisor.HAS_PIDFD else (signal.SIGCHLD,))
    engine.loop.watch_signals(signums, engine.on_signal)
    return cfg


def _consider(engine: Engine, jobs: list) -> None:
    for job in jobs:
        if engine.jobs.get(job.spec.name) is job and not engine.shutting_down:
            engine._consider(job)


def _start_rest(engine: Engine, rest: list) -> None:
    """START_PER_TURN jobs per loop turn; once all are started, act on the control rows
    (RESTART_...) that waited in the store."""
    _consider(engine, rest[:START_PER_TURN])
    if rest[START_PER_TURN:]:
        engine.loop.call_soon(_start_rest, engine, rest[START_PER_TURN:])
    else:
        watches.handle_control_rows(engine)


def finish(engine: Engine) -> None:
    """After the loop: every job has exited (or we are failing); release everything."""
    if engine.control is not None:
        engine.control.close()
        _unlink(Path(engine.control.path))
    if engine.store is not None:
        engine._event("daemon_stopped", None, "all jobs stopped")
        engine.recorder.flush()
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
    engine.recorder.flush()
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
