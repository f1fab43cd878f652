"""The process layer the engine runs jobs through: `supervisor` (spawn, signal, reap,
adopt) and the zygotes (program jobs' runs forked from a preloaded interpreter), plus
what belongs to a job's process but not to supervisor: its log file (opened, rotated,
and watched so it stays bounded; with `[logs] timestamps` on, the job writes to pipes
that the log writer stamps into it: logpipes.py) and its exit, registered in the loop
as a pidfd reader. The engine calls only these methods; tests give it a fake with the
same ones (tests/engine/fakes.py). Part of the engine.
"""
from __future__ import annotations

import os

from .. import logs, supervisor
from .logpipes import LogPipes


class SystemProcesses:
    def __init__(self, engine):
        self.engine = engine
        self.log_guard = None        # watches.LogGuard, once the watches are set up
        self._exits: dict = {}       # pidfd -> (callback, args), to re-register after a spurious wake
        self.log_pipes = LogPipes(engine.home, engine.loop, lambda name, text: engine.event(name, None, text))
        self.log_pipes.find()        # the writer a dead daemon left, with the pipes of the jobs it left
        self._how: dict = {}         # pid -> how it was started (`started`), until the engine asks
        self.zygotes = None          # zygote.Zygotes, from the first run that may use one

    def spawn(self, argv: list, env: dict, cwd: str, log_path: str, *, start: str | None = None,
              preload: tuple = (), **options):
        """Start a job process writing to `log_path`, with supervisor.spawn's options (its
        user, umask, limits, mark); SpawnError (an OSError) if it cannot be. A program
        job's run (`start` given) goes through its zygote (preloading `preload`) when
        start is "zygote" and the zygote can take it, else it is spawned."""
        settings = self.engine.settings
        logs.rotate_if_needed(log_path, settings.log_max_bytes, settings.log_keep)
        fds = self._outputs(log_path, settings.log_timestamps)
        try:
            proc, how = self._start(argv, env, cwd, fds if len(fds) == 2 else fds[0], start, preload, options)
        finally:
            for fd in fds:
                os.close(fd)
        if how is not None:
            self._how[proc.pid] = how
        if self.log_guard is not None:
            self.log_guard.arm(log_path)
        return proc

    def prepare(self, argv: list, env: dict, *, start: str | None = None, preload: tuple = (), **options) -> None:
        """Get ready for a run like this one, never waiting: a program job's zygote starts."""
        if start == "zygote":
            self._zygotes().prepare(argv, env, preload)

    def warming(self) -> bool:
        """A zygote that runs about to start would fork from is still starting (for
        zygote.WARMING seconds at most)."""
        return self.zygotes is not None and self.zygotes.starting()

    def start_helper(self, argv: list) -> None:
        """Start a helper process of the daemon's own (the fence): its own group, output to
        /dev/null, not a job (never adopted; reaped as an orphan when it ends)."""
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**self.engine.base_env, "PYTHONPATH": package_parent}
        fd = os.open(os.devnull, os.O_WRONLY)
        try:
            supervisor.close(supervisor.spawn(argv, env, str(self.engine.home), fd))
        finally:
            os.close(fd)

    def _outputs(self, log_path: str, timestamps: str) -> tuple:
        """The job's stdout and stderr: pipes to the log writer when its lines are stamped
        (and a writer can be had), else the log file itself, for both."""
        self.log_pipes.wanted = timestamps != "none"
        log_fd = logs.open_log(log_path)       # made now, so that the log guard can watch it
        try:
            pipes = self.log_pipes.open(log_path, timestamps) if self.log_pipes.wanted else None
        except OSError:
            os.close(log_fd)
            raise
        if pipes is None:
            return (log_fd,)
        os.close(log_fd)
        return pipes

    def before_exec(self) -> None:
        """The daemon re-executes itself: hand the log writer what it has not taken yet."""
        self.log_pipes.before_exec()

    def _start(self, argv, env, cwd, fd, start, preload, options) -> tuple:
        """(proc, how it started): through the zygote when start says so and it can, else spawned."""
        if start != "zygote":
            return supervisor.spawn(argv, env, cwd, fd, **options), None if start is None else ("spawn", None)
        from ..zygote import Unavailable

        try:
            return self._zygotes().spawn(argv, env, cwd, fd, preload=preload, **options), ("zygote", None)
        except Unavailable as exc:
            return supervisor.spawn(argv, env, cwd, fd, **options), ("spawn", str(exc))

    def _zygotes(self):
        if self.zygotes is None:
            from .. import launch
            from ..zygote import Zygotes

            engine = self.engine
            self.zygotes = Zygotes(engine.loop, lambda name, message: engine.event(name, None, message),
                                   launch.inherited(engine.base_env), lambda: tuple(engine.settings.python_env))
        return self.zygotes

    def started(self, proc) -> tuple | None:
        """How proc was started, asked once right after spawn: ("zygote", None), or
        ("spawn", why not the zygote, or None if the job asked for a spawn); None for
        a command job."""
        return self._how.pop(proc.pid, None)

    def watch(self, proc, callback, *args) -> None:
        """Call callback(*args) when proc may have exited (then `reap` tells)."""
        if proc.pidfd is not None:
            self._exits[proc.pidfd] = (callback, args)
            self.engine.loop.add_reader(proc.pidfd, callback, *args)

    def reap(self, proc):
        """(exit code, signal) once proc has exited, else None (and it stays watched)."""
        pidfd = proc.pidfd
        if pidfd is not None:
            self.engine.loop.remove_reader(pidfd)      # while it is open: reap closes it
        status = supervisor.reap(proc)
        if pidfd is not None:
            watched = self._exits.pop(pidfd, None)
            if status is None and watched is not None:
                self.watch(proc, watched[0], *watched[1])
        return status

    def signal(self, proc, sig: int) -> bool:
        return supervisor.signal_group(proc, sig)

    def adopt(self, pid: int, ticks: int, uids, mark: str | None):
        return supervisor.adopt(pid, ticks, uids=uids, mark=mark)

    def leaders(self, marks: dict, keys: tuple, uids) -> list:
        return supervisor.leaders(marks, keys, uids)

    def environ(self, pid: int, key: str) -> str | None:
        """One variable of a process's environment (None if absent or unreadable)."""
        from ..supervisor import procfs

        prefix = key.encode() + b"="
        for item in (procfs.environ(pid) or b"").split(b"\0"):
            if item.startswith(prefix):
                return item[len(prefix):].decode(errors="replace")
        return None

    def oom_killed(self, proc) -> bool:
        return supervisor.oom_killed(proc)

    def reap_orphans(self, tracked) -> list:
        zygotes = self.zygotes.pids() if self.zygotes is not None else set()
        return supervisor.reap_orphans(set(tracked) | zygotes)

    def finish(self) -> None:
        """The daemon exits: its zygotes stop (its jobs have), and the log writer writes
        the jobs' last lines before it lets go."""
        if self.zygotes is not None:
            self.zygotes.close()
        self.log_pipes.finish()

    def close(self, proc) -> None:
        supervisor.close(proc)
