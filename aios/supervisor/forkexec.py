"""Starting a process that must change what it is between fork and exec: its user and
groups (later also its limits). posix_spawn has no step for that, so: fork, then in the
child reset signals, lead a new process group, put stdin on /dev/null and stdout and
stderr on the log, set the umask, drop privileges (setgroups, then setgid, then setuid:
a root child never keeps extra groups, and never keeps root once it has its user), chdir
(as the job's user, so a cwd it may not enter fails), then exec.

The child runs only os-level calls on values prepared by the parent, and reports a
failure before exec as "STEP:ERRNO" on a close-on-exec pipe; the parent reads the pipe
to its end (empty: the exec happened) and raises. All signals stay blocked in the parent
from before the fork until the child has put every disposition back to its default, so
no handler of the daemon ever runs in the child.

A fork copies the daemon's page tables: it costs more than posix_spawn (see spawn.py),
so only jobs that need a privilege change come here. Imports nothing from aios.
"""
from __future__ import annotations

import os
import signal

__all__ = ["fork_exec", "Failed"]


class Failed(Exception):
    """The child could not reach exec: step names what failed, err is its errno (0 for
    input exec cannot take: a NUL byte, an unencodable string)."""

    def __init__(self, step: str, err: int):
        super().__init__(step, err)
        self.step, self.err = step, err


def fork_exec(argv: list[str], env: dict[str, str], cwd: str, log_fd: int, *, sigdef: tuple,
              uid: int | None, gid: int | None, groups: tuple | None, umask: int | None) -> int:
    """The pid of argv started as described above; OSError if the fork itself fails,
    Failed if the child failed before its exec (the child is reaped)."""
    reader, writer = os.pipe2(os.O_CLOEXEC)
    try:
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(reader)
        os.close(writer)
        raise
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            _child(writer, devnull, log_fd, argv, env, cwd, sigdef, uid, gid, groups, umask)
    finally:                        # only the parent gets here: the child exec'd or exited
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(writer)
        os.close(devnull)
    try:
        report = os.read(reader, 64)
    finally:
        os.close(reader)
    if report:
        os.waitpid(pid, 0)
        step, _, err = report.decode().partition(":")
        raise Failed(step, int(err))
    return pid


def _child(writer, devnull, log_fd, argv, env, cwd, sigdef, uid, gid, groups, umask) -> None:
    step = "signals"
    try:
        for sig in sigdef:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        step = "setpgid"
        os.setpgid(0, 0)
        step = "stdio"
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        if umask is not None:
            os.umask(umask)
        if groups is not None:
            step = "setgroups"
            os.setgroups(groups)
        if gid is not None:
            step = "setgid"
            os.setresgid(gid, gid, gid)
        if uid is not None:
            step = "setuid"
            os.setresuid(uid, uid, uid)
        step = "cwd"
        os.chdir(cwd)
        step = "exec"
        if "/" in argv[0]:
            os.execve(argv[0], argv, env)
        os.execvpe(argv[0], argv, env)      # searches env's PATH, as the job's user
    except OSError as exc:
        report = f"{step}:{exc.errno or 0}"
    except BaseException:           # ValueError, TypeError: input exec cannot take
        report = "input:0"
    try:
        os.write(writer, report.encode())
    finally:
        os._exit(127)
