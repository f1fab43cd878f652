"""Starting a job's process, and nothing else: every failure to start is one SpawnError.

A job runs as the leader of its own process group (pgid = pid), with stdin on
/dev/null, stdout and stderr on the job's log fd, every signal disposition at its
default and an empty signal mask; with cgroup containment, inside a cgroup of its own
from its first instruction (cgroup.py). It is started with posix_spawn (vfork-like: the
cheapest way to start a process from a large parent, 0.16 ms for /bin/true), unless
something must happen between fork and exec (another user, nice, open-file limit, I/O
class): then with a fork (forkexec.py, about 2 ms: only those jobs pay it).

Whatever stops a process from starting (a missing or non-executable program, a cwd that
vanished, no descriptors or memory left, a NUL byte or an unencodable string in an
argument, an argument list too long, a privilege or limit it may not take) raises
SpawnError (an OSError) with `.errno` where the system gave one and a one-line message
naming the program and what failed, e.g. `cannot start 'foo': No such file or directory
(ENOENT)`. Imports aios.errors; aios.spec only to describe bad input, on the error path.
"""
from __future__ import annotations

import errno
import os
import resource
import signal

from ..errors import SpawnError
from . import cgroup, forkexec, limits as planner, procs

__all__ = ["spawn", "close_on_exec_all", "set_jobs_nofile"]

# Reset in the child: every catchable standard signal, whatever the daemon (or Python:
# SIGPIPE, SIGXFSZ ignored, SIGINT handled) did with it.
_SIGDEF = tuple(int(s) for s in signal.Signals
                if int(s) < 32 and s not in (signal.SIGKILL, signal.SIGSTOP))


_JOBS_NOFILE: int | None = None     # the soft open-file limit jobs start with (set_jobs_nofile)


def set_jobs_nofile(soft: int | None) -> None:
    """From now on, jobs start with this soft RLIMIT_NOFILE (the hard limit stays the
    daemon's) unless they set `nofile`, whatever the daemon raised its own to: programs
    that use select() need fds below 1024. None: the daemon's own, inherited."""
    global _JOBS_NOFILE
    _JOBS_NOFILE = soft


def spawn(argv: list[str], env: dict[str, str], cwd: str, log_fd: int | tuple, *, uid: int | None = None,
          gid: int | None = None, groups: tuple[int, ...] | None = None, umask: int | None = None,
          mark: str | None = None, unit: str = "run", limits: dict | None = None, via=None,
          folder: str | None = None) -> procs.Proc:
    """Start argv as the leader of a new process group; SpawnError if it cannot start.

    argv[0] without a slash is looked up in env["PATH"] (as a shell started with that
    environment would). uid, gid and groups (the complete supplementary list) are what
    the process runs as; umask its umask; limits (memory_max, cpu_quota, cpu_weight,
    nice, nofile, ioclass: limits.py) are enforced through its cgroup or in the child.
    mark is the NAME=VALUE of env that marks this run's processes (its AIOS_RUN_TOKEN);
    with cgroup containment the run gets a cgroup of its own, named after `unit`.
    folder, opened here (as the daemon), is the process's descriptor 3. What must happen
    between fork and exec (ids, most limits, the folder) takes a fork (forkexec.py)
    instead of posix_spawn. log_fd is the job's stdout and stderr, or a pair (stdout fd,
    stderr fd).

    via: another way to start it, called as via(argv, env, cwd, output_fds(log_fd), setup) and
    returning (pid, cgroup) of a child of ours that took `setup` (forkexec.Setup) and
    waits, in a cgroup of its own where there is cgroup containment, for the caller to
    let it run: the zygote (aios/zygote.py). Its limits are written into that cgroup
    here. It raises forkexec.Failed as a fork would, or anything else (not an OSError)
    to say it cannot start this run, which is then passed on. No folder goes that way.
    """
    if not argv:
        raise SpawnError(f"cannot start an empty command (cwd {_shown(cwd)})")
    what = _shown(argv[0])
    how = limits_plan(limits)
    drop = {"uid": uid, "gid": gid, "groups": groups, "umask": umask}
    if via is not None:
        return _spawn_via(via, argv, env, cwd, log_fd, what, how, drop, mark)
    folder_fd = _open_folder(folder, what)
    place = _cgroup(what, unit, how.cgroup_files)
    try:
        pid = _start_in(place, argv, env, cwd, log_fd, what, how, drop, folder_fd)
        _limit_after(pid, what, how)
    except BaseException as exc:
        if place is not None:
            cgroup.remove(place)
        if isinstance(exc, OSError) and not isinstance(exc, SpawnError):
            raise failure(what, exc.errno) from None    # whatever else failed on the way
        raise
    finally:
        if folder_fd is not None:
            os.close(folder_fd)
    return procs.track(pid, what, place, None if mark is None else os.fsencode(mark))


def limits_plan(limits: dict | None) -> planner.Plan:
    return planner.plan(limits, cgroup.TREE.controllers if cgroup.TREE is not None else None)


def _cgroup(what: str, unit: str, files: dict) -> str | None:
    if cgroup.TREE is None:
        return None
    try:
        return cgroup.create(unit, files)
    except OSError as e:
        raise failure(what, e.errno, f"cgroup {_shown(cgroup.TREE.scope)}") from None


def _setup(how: planner.Plan, drop: dict, later: bool = False) -> forkexec.Setup:
    """What the child sets up before its job: `later` adds the limits a spawned job gets
    right after its exec (none comes later in a zygote's child, which never execs)."""
    rlimits = tuple(how.rlimits or _jobs_nofile()) + (tuple(how.later) if later else ())
    return forkexec.Setup(sigdef=_SIGDEF, rlimits=rlimits, nice=how.nice, ioprio=how.ioprio, **drop)


def _spawn_via(via, argv, env, cwd, log_fd, what: str, how: planner.Plan, drop: dict, mark) -> procs.Proc:
    setup = _setup(how, drop, later=True)
    try:
        pid, place = via(argv, env, cwd, output_fds(log_fd), setup)
    except forkexec.Failed as f:
        raise _explained(f, what, argv, env, cwd, setup) from None
    if place is not None:
        try:
            cgroup.limit(place, how.cgroup_files)
        except OSError as e:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            cgroup.remove(place)
            raise failure(what, e.errno, f"cgroup {_shown(place)}") from None
    try:
        _limit_after(pid, what, how)
    except SpawnError:
        if place is not None:
            cgroup.remove(place)
        raise
    return procs.track(pid, what, place, None if mark is None else os.fsencode(mark))


def _open_folder(folder: str | None, what: str) -> int | None:
    if folder is None:
        return None
    try:
        return forkexec.above_3(os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except OSError as e:
        raise failure(what, e.errno, f"folder {_shown(folder)}") from None
    except ValueError:
        raise SpawnError(f"cannot start {what}: the folder {_shown(folder)} holds a NUL byte") from None


def _start_in(place: str | None, argv, env, cwd, log_fd, what, how, drop: dict, folder_fd: int | None) -> int:
    """Start the process, inside the cgroup `place` from its first instruction: the
    daemon moves there for the spawn and back (cgroup.py)."""
    if place is not None:
        try:
            cgroup.enter(place)
        except OSError as e:
            raise failure(what, e.errno, f"cgroup {_shown(place)}") from None
    try:
        if drop["uid"] is None and drop["gid"] is None and drop["groups"] is None and not how.in_child \
                and folder_fd is None:
            return _start(argv, env, cwd, log_fd, what, drop["umask"])
        return _fork_start(argv, env, cwd, log_fd, what, _setup(how, drop), folder_fd)
    except (ValueError, TypeError) as exc:     # NUL byte, unencodable text, not a string
        raise SpawnError(f"cannot start {what}: {input_problem(argv, env, cwd) or exc}") from None
    except MemoryError:
        raise SpawnError(f"cannot start {what}: out of memory (ENOMEM)", errno.ENOMEM) from None
    finally:
        if place is not None:
            _leave_cgroup()


def _limit_after(pid: int, what: str, how) -> None:
    """Limits set once the job has exec'd (limits.py says why); a job that cannot be
    limited as asked does not run."""
    for res, soft, hard in how.later:
        try:
            resource.prlimit(pid, res, (soft, hard))
        except OSError as e:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise failure(what, e.errno, "prlimit") from None


def _leave_cgroup() -> None:
    for _ in range(2):              # cgroup.kill never kills a cgroup the daemon is in
        try:
            cgroup.leave()
            return
        except OSError:
            continue


def _start(argv: list[str], env: dict[str, str], cwd: str, log_fd: int, what: str, umask: int | None) -> int:
    """posix_spawn, with the daemon's cwd, umask and soft open-file limit set to the
    job's for the moment of the spawn (posix_spawn has no option for them; the parent
    opens no descriptor meanwhile, so a lowered limit cannot bite it)."""
    prev = _enter(cwd, what)
    mask = None if umask is None else os.umask(umask)
    nofile = _jobs_nofile()
    own = resource.getrlimit(resource.RLIMIT_NOFILE) if nofile else None
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile[0][1:])
    try:
        return _posix_spawn(argv, env, log_fd, what)
    finally:
        if own is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, own)
        if mask is not None:
            os.umask(mask)
        if prev is not None:
            _leave(prev)


def _jobs_nofile() -> tuple:
    """((RLIMIT_NOFILE, soft, hard),) that jobs start with, if not the daemon's own."""
    if _JOBS_NOFILE is None:
        return ()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _JOBS_NOFILE if hard == resource.RLIM_INFINITY else min(_JOBS_NOFILE, hard)
    return () if wanted == soft else ((resource.RLIMIT_NOFILE, wanted, hard),)


def _fork_start(argv: list[str], env: dict[str, str], cwd: str, log_fd: int, what: str,
                setup: forkexec.Setup, folder_fd: int | None = None) -> int:
    try:
        return forkexec.fork_exec(argv, env, cwd, output_fds(log_fd), setup, folder_fd)
    except OSError as e:            # the fork, or a descriptor for its pipe
        raise failure(what, e.errno, "fork") from None
    except forkexec.Failed as f:
        if f.step == "input":
            raise ValueError("input exec cannot take") from None
        raise _explained(f, what, argv, env, cwd, setup) from None


def _explained(f: forkexec.Failed, what: str, argv, env, cwd, setup: forkexec.Setup) -> SpawnError:
    """The SpawnError of a child that failed at step f.step, before its job ran."""
    if f.step == "input":
        return SpawnError(f"cannot start {what}: {input_problem(argv, env, cwd) or 'input exec cannot take'}")
    if f.step == "exec":
        return failure(what, f.err, hint=exec_hint(f.err, argv[0], env))
    names = {name: getattr(setup, name) for name in ("uid", "gid", "groups", "nice", "ioprio")}
    where = f"cwd {_shown(cwd)}" if f.step == "cwd" else _DROP_STEPS.get(f.step, f.step).format(**names)
    return failure(what, f.err, where)


_DROP_STEPS = {"setgroups": "setgroups({groups})", "setgid": "setgid({gid})", "setuid": "setuid({uid})",
               "setrlimit": "setrlimit(RLIMIT_NOFILE)", "setpriority": "setpriority({nice})",
               "ioprio_set": "ioprio_set({ioprio})"}


def _enter(cwd: str, what: str) -> str | None:
    """chdir to cwd (posix_spawn has no cwd option); return the directory to go back to."""
    try:
        prev = os.getcwd()
    except OSError:                 # our own cwd was removed: nothing to go back to
        prev = None
    if cwd == prev:
        return None
    try:
        os.chdir(cwd)
    except OSError as e:
        raise failure(what, e.errno, f"cwd {_shown(cwd)}") from None
    return prev


def _leave(prev: str) -> None:
    try:
        os.chdir(prev)
    except OSError:                 # removed meanwhile; the job started all the same
        os.chdir("/")


def _posix_spawn(argv: list[str], env: dict[str, str], log_fd, what: str) -> int:
    out, err = output_fds(log_fd)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out, 1),
        (os.POSIX_SPAWN_DUP2, err, 2),
    ]
    program = _lookup(argv[0], env, what)
    try:
        return os.posix_spawnp(
            program, argv, env, file_actions=actions,
            setpgroup=0, setsigdef=_SIGDEF, setsigmask=(),
        )
    except OSError as e:            # glibc has already reaped the failed child
        raise failure(what, e.errno, hint=exec_hint(e.errno, program, env)) from None


def output_fds(log_fd) -> tuple[int, int]:
    """(stdout fd, stderr fd) of a spawn's log_fd: one descriptor for both, or a pair
    (the pipes of the log writer, which keeps the two streams apart)."""
    return (log_fd, log_fd) if isinstance(log_fd, int) else (log_fd[0], log_fd[1])


def _lookup(program: str, env: dict[str, str], what: str) -> str:
    """program as posix_spawnp should see it: resolved in env's PATH if that differs."""
    path = env.get("PATH")
    if "/" in program or path is None or path == os.environ.get("PATH"):
        return program              # posix_spawnp searches the daemon's own PATH
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise failure(what, errno.ENOENT, hint=exec_hint(errno.ENOENT, program, env))


def close_on_exec_all(keep: tuple[int, ...] = ()) -> list[int]:
    """Mark every descriptor above 2 close-on-exec, but those in `keep`; return the ones
    that were inheritable. exec closes only close-on-exec descriptors, so call this once
    when the daemon starts: whatever it inherited (a pipe of the shell or of `aios up`,
    an fd handed over by a re-exec) then never reaches a job. The daemon's own
    descriptors are close-on-exec already (Python opens them so)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:                 # no /proc: every possible number
        names = range(3, os.sysconf("SC_OPEN_MAX"))
    changed = []
    for fd in map(int, names):
        if fd <= 2 or fd in keep:
            continue
        try:
            if os.get_inheritable(fd):
                os.set_inheritable(fd, False)
                changed.append(fd)
        except OSError:             # the listing's own descriptor, closed by now
            continue
    return changed


# ---------------------------------------------------------------- messages


def failure(what: str, err: int | None, where: str = "", hint: str = "", verb: str = "start") -> SpawnError:
    """SpawnError `cannot VERB WHAT: [WHERE: ]STRERROR (ENAME)[: HINT]`."""
    text = os.strerror(err) if err else "failed"
    name = errno.errorcode.get(err, str(err)) if err else ""
    message = f"cannot {verb} {what}: " + (f"{where}: " if where else "") + text + (f" ({name})" if name else "")
    return SpawnError(message + (f": {hint}" if hint else ""), err)


def exec_hint(err: int | None, program: str, env: dict) -> str:
    """What an exec errno means for this program, when the bare strerror misleads."""
    if "/" not in program:
        return f"not in the job's PATH {_shown(env.get('PATH', os.defpath))}" if err == errno.ENOENT else ""
    if err == errno.ENOENT and os.path.exists(program):
        return f"its interpreter {_shebang(program)} was not found"
    if err == errno.EACCES and os.path.isdir(program):
        return "it is a directory"
    if err == errno.EACCES and os.path.isfile(program):
        return "the file is not executable (chmod +x) or its file system is mounted noexec"
    if err == errno.ENOEXEC:
        return "not a binary this machine runs, and no '#!' line"
    return ""


def _shebang(program: str) -> str:
    try:
        with open(program, "rb") as f:
            line = f.readline(256).strip()
    except OSError:
        return "(unreadable)"
    return _shown(line.decode(errors="replace")) if line.startswith(b"#!") else "(no '#!' line)"


def input_problem(argv: list, env: dict, cwd: object) -> str | None:
    """Which argument, variable or cwd can never be passed to exec, and why; None if all can."""
    from ..spec import exec_text_problem

    for index, arg in enumerate(argv):
        name = f"argument {index}" if index else "the program name"
        problem = _type_problem(arg) or exec_text_problem(arg)
        if problem:
            return f"{name} {problem}"
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key:
            return f"environment variable name {_shown(key)} is not valid (empty, or holds '=')"
        problem = exec_text_problem(key) or _type_problem(value) or exec_text_problem(f"{key}={value}")
        if problem:
            return f"env {_shown(key)} {problem}"
    problem = _type_problem(cwd) or exec_text_problem(cwd)
    return f"cwd {problem}" if problem else None


def _type_problem(value: object) -> str | None:
    return None if isinstance(value, str) else f"is {type(value).__name__}, not a string"


def _shown(value: object, limit: int = 256) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
