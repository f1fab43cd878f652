"""Wires an Engine to the world: the single-daemon lock, the configuration, the store,
the real clocks and processes, signals, the control socket, the watches, start-up in
turns, re-exec, and the orderly finish. Part of the engine.

One daemon per home: the lock is an flock on the home directory itself, taken before
anything in the home is touched; no cleanup (`git clean -fX`, deleting aios.pid) can
remove it, and the kernel drops it when the daemon dies, even by SIGKILL. aios.pid holds
the daemon's pid for people and marks an unclean exit (a clean one empties it).
"""
from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

from .. import config, launch, supervisor
from ..homefs import check_home
from ..oplog import open_oplog
from ..spec import AiosError, JobType
from ..store import open_store
from . import recovery, watches
from .core import Engine
from .housekeeping import Housekeeping
from .loop import Loop
from .processes import SystemProcesses

START_PER_TURN = 10      # jobs started per loop turn at start-up: the control socket answers in between
WARM_POLL = 0.005        # seconds between start-up turns while the jobs next in line wait for their zygote
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_INHERIT_ENV = "AIOS_REEXEC_FDS"
_READY_ENV = "AIOS_READY_FD"
_CONTROL_ENV = (_INHERIT_ENV, _READY_ENV, "NOTIFY_SOCKET")   # the daemon's own variables: never passed to jobs


class AlreadyRunning(AiosError):
    """Another AIOS daemon is running for this home."""


def serve(home: Path, force: bool = False, force_new_db: bool = False) -> int:
    """Run a daemon for `home` in the foreground until it is shut down (or re-executed),
    then end the process. force_new_db: a bad orchestrator.db is moved aside and a new one
    begun."""
    import sys

    daemon = Daemon.open(Path(home), force=force, force_new_db=force_new_db)
    daemon.start()
    engine = daemon.engine
    try:
        engine.loop.run(until=lambda: engine.stopped)
    finally:
        if engine.reexec_requested:
            daemon.reexec()   # does not return
        daemon.finish()
    # Everything is written and closed: the interpreter's own teardown (about 25 ms with
    # 100 jobs' objects to free) would only delay the moment the daemon is gone.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class Daemon:
    """An engine and what its process holds for it: the lock, the listening socket handed
    over by a re-exec, the pipe that `aios up -d` waits on, and the configuration read at
    start."""

    def __init__(self, engine: Engine, cfg, *, lock_fd: int, unclean: bool, listen_fd, ready_fd, force: bool):
        self.engine, self.cfg, self.lock_fd, self.unclean = engine, cfg, lock_fd, unclean
        self.listen_fd, self.ready_fd, self.force = listen_fd, ready_fd, force

    @classmethod
    def open(cls, home: Path, force: bool = False, force_new_db: bool = False) -> Daemon:
        """Take the home's lock, read its configuration and open its store."""
        from ..control import raise_nofile_limit

        supervisor.probe_containment()     # the kernel's first cgroup move is slow: begun now, in parallel
        home = home.absolute()
        jobs_nofile = raise_nofile_limit()[0]   # connections, pidfds, logs; jobs keep the usual limit
        inherited = _inherited_fds()
        ready_fd = os.environ.pop(_READY_ENV, None)
        lock_fd, unclean = (inherited[0], True) if inherited else _lock(home)
        try:
            cfg = _load_config(home)
            if os.environ.get("TZ"):     # a TZ no libc reads: a one-line refusal now, not at the first schedule
                config.local_zone()
            store = open_store(cfg.settings.store_url or str(home / "orchestrator.db"), cfg.settings.device_id,
                               force_new=force_new_db, password_file=cfg.settings.store_password_file,
                               lease_ttl=cfg.settings.lease_ttl)
        except BaseException:
            os.close(lock_fd)
            raise
        log = open_oplog(home, cfg.settings.log_max_bytes, cfg.settings.log_keep)   # orchestrator.log (+ stderr)
        engine = Engine(home=home, settings=cfg.settings, store=store, loop=Loop(), processes=None,
                        reexecuted=inherited is not None, log=log)
        engine.processes = SystemProcesses(engine)
        engine.base_env = {k: v for k, v in os.environ.items() if k not in _CONTROL_ENV}
        engine.jobs_nofile = jobs_nofile
        return cls(engine, cfg, lock_fd=lock_fd, unclean=unclean, listen_fd=inherited[1] if inherited else None,
                   ready_fd=ready_fd, force=force)

    def start(self) -> None:
        """Adopt what the last daemon left, answer on the control socket (that is "ready"),
        then start the jobs a turn at a time, highest priority first."""
        began, engine = time.monotonic(), self.engine
        previous = self._prepare_store()
        cfg = self.cfg
        engine.loop.watch_signals(SHUTDOWN_SIGNALS + (signal.SIGCHLD,), engine.on_signal)
        self._contain()
        for problem in cfg.errors:
            engine.event("config_error", None, problem)
        if engine.store.moved_aside:
            engine.event("database_moved_aside", None, f"the bad database was moved to {engine.store.moved_aside}; "
                         "a new one was begun (--force-new-db)")
        recovery.adopt_leftovers(engine, previous, self.unclean)
        from ..control import SOCKET_NAME, ControlServer

        engine.recorder.flush()   # what a client reads once we answer is this daemon's, not the last one's
        engine.control = ControlServer(engine.ops, str(engine.home / SOCKET_NAME), self.listen_fd,
                                       report=lambda line: engine.event("control_limit", None, line),
                                       admits=lambda uid: uid in launch.control_uids(
                                           j.spec for j in engine.jobs.values()))
        watches.watch(engine)
        Housekeeping(engine).start()
        took = (time.monotonic() - began) * 1000
        engine.event("daemon_reexecuted" if engine.reexecuted else "daemon_started", None,
                     f"pid {os.getpid()}, {len(engine.jobs)} jobs, home {engine.home}, ready in {took:.1f} ms")
        _notify_ready(self.ready_fd, took)
        if "NOTIFY_SOCKET" in os.environ:   # started by systemd with Type=notify (aios service install)
            from ..service import notify_ready

            notify_ready(f"ready in {took:.1f} ms; {len(engine.jobs)} jobs")
        hold = _worth_waiting(_warm_zygotes(engine), os.cpu_count() or 1)   # after ready: a plan per job
        order = sorted(engine.jobs.values(), key=lambda j: -j.spec.priority)
        counts = engine.planner.refresh_queue(anyway=True, control=False) or {}
        _start_in_turns(engine, order, counts, hold)
        if engine.fleet is not None:
            engine.loop.call_soon(engine.fleet.start)   # heartbeat and leases: after ready, beside the first jobs

    def _contain(self) -> None:
        """Before the first spawn: no descriptor of ours reaches a job, every run in a cgroup
        of its own where cgroup v2 is ours, jobs with the usual open-file limit."""
        engine = self.engine
        supervisor.close_on_exec_all()
        engine.containment = supervisor.setup_containment(launch.cgroup_scope(engine.home))
        supervisor.set_jobs_nofile(engine.jobs_nofile)

    def _prepare_store(self) -> dict:
        """The tables the last daemon ran (to tell a changed job), --force, then this
        configuration's jobs with their stored state."""
        engine, cfg = self.engine, self.cfg
        store = engine.store
        engine.secret, engine.secret_is_new = _home_secret(store)
        previous = store.load_specs()
        if self.force and not engine.reexecuted:
            store.clear_states()
            dropped = store.clear_triggers()
            engine.log(f"--force: cleared job state and {dropped} pending trigger(s)")
        if engine.fleet is not None:   # a fleet: its published jobs, and this device's own
            engine.fleet.version, tables = store.fleet_jobs()
            if engine.fleet.version:
                cfg = self.cfg = config.with_fleet(cfg, tables)
        states, last = store.load_states(), store.last_runs()
        for name, spec in cfg.specs.items():
            engine.add_job(spec, states.get(name), last.get(name))
        engine.tables, engine.invalid = cfg.tables, dict(cfg.invalid)
        engine.recorder.write(store.save_specs, cfg.tables)
        return previous

    def finish(self) -> None:
        """After the loop: every job has exited (or we are failing); release everything."""
        engine = self.engine
        if engine.control is not None:
            engine.control.close()
            _unlink(Path(engine.control.path))
        engine.processes.finish()   # the zygotes stop; the jobs' last lines are in their logs
        engine.event("daemon_stopped", None, "all jobs stopped")
        if engine.fleet is not None:
            engine.fleet.release_all()
        engine.recorder.flush()
        engine.store.close()
        engine.loop.restore_signals()
        engine.loop.close()
        if not any(job.runs for job in engine.jobs.values()):
            _mark_clean(engine.home)   # the next start need not look for leftovers
        supervisor.end_containment()         # a process that outlives its daemon (tests) is as it was
        if supervisor.orphans.is_subreaper():
            supervisor.become_subreaper(False)
        os.close(self.lock_fd)

    def reexec(self) -> None:
        """Replace this process's code with a fresh copy of the daemon, keeping its pid, its
        children, the lock and the listening socket (clients wait in its backlog)."""
        engine = self.engine
        engine.event("daemon_reexec", None, f"re-executing pid {os.getpid()}; {len(engine.jobs)} jobs keep running")
        engine.recorder.flush()
        engine.store.close()
        engine.processes.before_exec()   # the log writer holds every pipe before ours close
        fds = (self.lock_fd, engine.control.sock.fileno())
        for fd in fds:
            os.set_inheritable(fd, True)
        os.environ[_INHERIT_ENV] = ",".join(map(str, fds))
        argv = _own_argv()
        os.execv(argv[0], argv)


def _warm_zygotes(engine: Engine) -> int:
    """Start now the zygotes that the program jobs fork their runs from: they preload while
    the daemon answers and starts its other jobs (the loop never waits), and a trigger
    soon after the start already finds its zygote ready. Returns how many always jobs
    about to start fork from one."""
    forking = 0
    for job in engine.jobs.values():
        life = job.life
        if job.spec.program and life.is_enabled and not (life.held or life.ineligible or life.standby):
            try:
                plan = launch.plan(job.spec, None, None, engine.base_env, engine.home, engine.settings)
            except OSError:
                continue        # its run says why
            engine.processes.prepare(plan.argv, plan.env, **plan.options)
            forking += job.spec.type is JobType.ALWAYS and not job.runs and _forks(engine, job)
    return forking


def _worth_waiting(forking: int, cores: int) -> bool:
    """Whether the always jobs that fork should wait for their zygote: a starting zygote
    costs about what one spawned interpreter does, and up to one interpreter per core
    start side by side, so only more jobs than cores are started sooner by waiting."""
    return forking > cores


def _forks(engine: Engine, job) -> bool:
    return bool(job.spec.program) and (job.spec.start or engine.settings.python_start) == "zygote"


def _start_in_turns(engine: Engine, rest: list, counts: dict, hold: bool = False) -> None:
    """START_PER_TURN jobs per loop turn, in order, except that with `hold`, while a zygote
    starts (`processes.warming`), a job that forks from one waits, and the jobs after it,
    a turn later (WARM_POLL); once all are started, act on the control rows (RESTART_...)
    that waited in the store."""
    turn = rest[:START_PER_TURN]
    if hold and engine.processes.warming():
        turn = list(itertools.takewhile(lambda job: not _forks(engine, job), turn))
    engine.consider_all([job for job in turn if engine.jobs.get(job.name) is job and not engine.shutting_down])
    if rest[len(turn):]:
        if turn:
            engine.loop.call_soon(_start_in_turns, engine, rest[len(turn):], counts, hold)
        else:
            engine.loop.call_later(WARM_POLL, _start_in_turns, engine, rest, counts, hold)
    else:
        engine.planner.control_rows(counts)
        if supervisor.become_subreaper():   # after the first jobs: ctypes is not on their path
            engine.containment = supervisor.containment()


# ---------------------------------------------------------------- re-exec and readiness

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


def _notify_ready(value: str | None, took_ms: float) -> None:
    """Tell `aios up -d`, waiting on an inherited pipe, that the daemon is ready."""
    if value:
        try:
            os.write(int(value), f"ready {took_ms:.1f}\n".encode())
            os.close(int(value))
        except (OSError, ValueError):
            pass


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------- the lock

PID_FILE = "aios.pid"


def _lock(home: Path) -> tuple[int, bool]:
    """Hold an exclusive flock on the home directory for the daemon's lifetime. Returns the
    fd and whether the last daemon died without a clean exit (aios.pid not emptied)."""
    import fcntl

    home.mkdir(parents=True, exist_ok=True, mode=0o750)
    check_home(home)   # another user's, or others may write it: refused before anything is touched
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunning(f"another AIOS daemon (pid {_read_pid(home) or '?'}) is already running "
                             f"for {home}") from None
    return fd, _mark_running(home)


def _read_pid(home: Path) -> str:
    try:
        fd = os.open(home / PID_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        return os.read(fd, 32).decode(errors="replace").strip()
    finally:
        os.close(fd)


def _mark_running(home: Path) -> bool:
    """Write our pid into aios.pid (never through a link); True if the last daemon left
    its own there (it did not exit cleanly) or the file is gone (nothing proves it did)."""
    path = home / PID_FILE
    unclean = bool(_read_pid(home)) or path.is_symlink() or not path.exists()   # a link is no mark of ours
    try:   # overwritten, never emptied first: a daemon killed right now still leaves the mark
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            mine = f"{os.getpid()}\n".encode()
            os.pwrite(fd, mine, 0)
            os.ftruncate(fd, len(mine))
        finally:
            os.close(fd)
    except OSError:   # a full disk, or a link planted there: the lock is what matters
        pass
    return unclean


def _mark_clean(home: Path) -> None:
    try:
        fd = os.open(home / PID_FILE, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


SECRET_KEY = "run_secret"


def _home_secret(store) -> tuple[bytes, bool]:
    """The home's secret for run tokens, kept in the store; (secret, made just now)."""
    stored = store.meta_get(SECRET_KEY)
    if stored:
        return bytes.fromhex(stored), False
    secret = os.urandom(32)
    store.meta_set(SECRET_KEY, secret.hex())
    return secret, True


def _load_config(home: Path):
    if not (home / "aios.toml").exists():
        config.write_default(home)
    return config.load(home, cache=True)
