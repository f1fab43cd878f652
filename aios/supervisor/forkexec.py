"""Starting a process that must change what it is between fork and exec: its user and
groups, resource limits, nice value, I/O class. posix_spawn has no step for that, so:
fork, then in the child reset signals, lead a new process group, put stdin on /dev/null
and stdout and stderr on the log, set limits, nice and I/O class while still privileged,
set the umask, drop privileges (setgroups, then setgid, then setuid: a root child never
keeps extra groups, and never keeps root once it has its user), chdir (as the job's
user, so a cwd it may not enter fails), then exec.

The child runs only os-level calls on values prepared by the parent, and reports a
failure before exec as "STEP:ERRNO" on a close-on-exec pipe; the parent reads the pipe
to its end (empty: the exec happened) and raises. All signals stay blocked in the parent
from before the fork until the child has put every disposition back to its default, so
no handler of the daemon ever runs in the child.

The set-up itself (`Setup`, `steps`, `run_steps`) is shared with the zygote
(aios/zygote_server.py), whose children take the same steps and then, instead of an
exec, call the job's function.

A fork copies the daemon's page tables: it costs more than posix_spawn (see spawn.py),
so only jobs that need it come here. Imports aios.record and limits.py.
"""
from __future__ import annotations

import errno
import os
import resource
import signal

from ..record import record
from .limits import ioprio_setter

__all__ = ["fork_exec", "Failed", "Setup", "steps", "run_steps"]


class Failed(Exception):
    """The child could not reach exec: step names what failed, err is its errno (0 for
    input exec cannot take: a NUL byte, an unencodable string)."""

    def __init__(self, step: str, err: int):
        super().__init__(step, err)
        self.step, self.err = step, err


@record
class Setup:
    """What a child becomes before its job runs: signals put back to their defaults
    (`sigdef`), ids, umask, limits ((resource, soft, hard) each), nice, I/O priority.
    None: as the parent has it."""

    sigdef: tuple
    uid: int | None = None
    gid: int | None = None
    groups: tuple | None = None
    umask: int | None = None
    rlimits: tuple = ()
    nice: int | None = None
    ioprio: int | None = None


def fork_exec(argv: list[str], env: dict[str, str], cwd: str, log_fds: tuple[int, int], setup: Setup,
              folder_fd: int | None = None) -> int:
    """The pid of argv started as described above; OSError if the fork itself fails,
    Failed if the child failed before its exec (the child is reaped). folder_fd, if
    given, is the child's descriptor 3 (opened by the parent: a folder the job's user
    could not reach by its path, such as a home inside /root)."""
    reader, writer = os.pipe2(os.O_CLOEXEC)
    if folder_fd is not None:
        writer = above_3(writer)
    try:
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        os.close(reader)
        os.close(writer)
        raise
    prepared = steps(devnull, log_fds, cwd, setup)
    if folder_fd is not None:    # after stdio: 3 may have been the source of 0, 1 or 2
        prepared.insert(3, ("folder", os.dup2, (folder_fd, 3)))
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        pid = os.fork()
        if pid == 0:
            _child(writer, prepared, argv, env)
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


def steps(devnull: int, log_fds: tuple[int, int], cwd: str, setup: Setup, *, before_drop: tuple = (),
          after_drop: tuple = ()) -> list:
    """What a child does before its job, in order, as (name, call, args), prepared by the
    parent so that the child runs as little Python as it can. Limits, nice and I/O class
    come while the child may still raise them, then `before_drop`; chdir comes as the
    job's user, after `after_drop`."""
    done = [("signals", _default_signals, (setup.sigdef,)), ("setpgid", os.setpgid, (0, 0)),
            ("stdio", _stdio, (devnull, log_fds))]
    done += [("setrlimit", _setrlimit, tuple(limit)) for limit in setup.rlimits]
    if setup.nice is not None:
        done.append(("setpriority", os.setpriority, (os.PRIO_PROCESS, 0, setup.nice)))
    if setup.ioprio is not None:
        done.append(("ioprio_set", ioprio_setter(), (setup.ioprio,)))
    if setup.umask is not None:
        done.append(("umask", os.umask, (setup.umask,)))
    done += list(before_drop)
    for name, call, value in (("setgroups", os.setgroups, setup.groups), ("setgid", os.setresgid, setup.gid),
                              ("setuid", os.setresuid, setup.uid)):
        if value is not None:
            done.append((name, call, (list(value),) if name == "setgroups" else (value, value, value)))
    done += list(after_drop)
    done.append(("cwd", os.chdir, (cwd,)))
    return done


def run_steps(prepared: list) -> tuple[str, int] | None:
    """Take each step; (step, errno) of the first that fails ("input", 0 for a value no
    system call can take), or None once all are done."""
    step = "start"
    try:
        for step, call, args in prepared:
            call(*args)
    except OSError as exc:
        return step, exc.errno or 0
    except BaseException:           # ValueError, TypeError: input no system call can take
        return "input", 0
    return None


def _child(writer: int, prepared: list, argv: list[str], env: dict[str, str]) -> None:
    failed = run_steps(prepared)
    if failed is None:
        failed = _exec(argv, env)
    try:
        os.write(writer, f"{failed[0]}:{failed[1]}".encode())
    finally:
        os._exit(127)


def _exec(argv: list[str], env: dict[str, str]) -> tuple[str, int]:
    try:
        if "/" in argv[0]:
            os.execve(argv[0], argv, env)
        os.execvpe(argv[0], argv, env)      # searches env's PATH, as the job's user
    except OSError as exc:
        return "exec", exc.errno or 0
    except BaseException:           # ValueError, TypeError: input exec cannot take
        return "input", 0


def above_3(fd: int) -> int:
    """fd itself, or a close-on-exec copy above 3 (the child's dup2 to 3 must not hit it)."""
    if fd > 3:
        return fd
    import fcntl

    copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 4)
    os.close(fd)
    return copy


def _default_signals(sigdef: tuple) -> None:
    for sig in sigdef:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())


def _stdio(devnull: int, log_fds: tuple[int, int]) -> None:
    out, err = log_fds
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)


def _setrlimit(res: int, soft: int, hard: int) -> None:
    try:
        resource.setrlimit(res, (soft, hard))
    except ValueError as exc:       # Python's word for EPERM (a hard limit above ours) or EINVAL
        err = errno.EPERM if "not allowed" in str(exc) else errno.EINVAL
        raise OSError(err, os.strerror(err)) from None
