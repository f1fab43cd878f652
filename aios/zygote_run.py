"""A zygote's run process, between its fork and the job's code: set up as a spawned run
is (forkexec's steps: process group, stdio, limits, umask, ids, cwd), and besides:

- its environment and command line written where /proc/PID/environ and cmdline read
  them (the memory the kernel exec'd the zygote with: `areas`), so adoption finds the
  run's token there as in a spawned process; os.environ made the run's;
- every descriptor closed but its stdio, its report and its gate;
- the random seeds and import caches of a fresh interpreter and no module of aios left
  in sys.modules (`fresh_python`, while it waits for its run), the run's time zone;
- the report (the daemon's pipe) closed once set up, or the step that failed written on
  it; then it waits on the gate, which the daemon opens once it watches the pid: a gate
  closed without a word (the daemon gave up on the request) ends it unrun.

`areas()` and `own_environ()` run once in the zygote, at its start. Imports
aios.supervisor.forkexec, by its package (aios/zygote_server.py imports this module).
"""
from __future__ import annotations

import os
import sys

from .supervisor import forkexec

DEVNULL = -1                # /dev/null, opened once in the zygote (the run's stdin)
ENV_AREA = ARG_AREA = (0, 0)
ROOM_VAR = "AIOS_ZYGOTE_ROOM"   # the zygote's own variable that makes room for a run's environment
_PR_SET_DUMPABLE = 4


def areas() -> None:
    """Where the kernel reads /proc/self/cmdline and environ from (stat fields 48-51)."""
    global ENV_AREA, ARG_AREA, DEVNULL
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2:].split()
    ARG_AREA = (int(fields[45]), int(fields[46]))
    ENV_AREA = (int(fields[47]), int(fields[48]))
    DEVNULL = os.open(os.devnull, os.O_RDONLY)


def own_environ() -> None:
    """Every string of C's environ copied (putenv copies), so that none points into the
    memory a run's process overwrites; the room variable dropped."""
    saved = dict(os.environ)
    saved.pop(ROOM_VAR, None)
    os.environ.clear()
    os.environ.update(saved)


def room_problem(env: dict) -> str | None:
    """Why `env` does not fit where /proc/PID/environ is read from, or None."""
    size = sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())
    room = ENV_AREA[1] - ENV_AREA[0]
    return None if size <= room else f"its environment ({size} bytes) is larger than the zygote's room ({room})"


def prepare(request: dict, stdout: int, stderr: int, gate: int, report: int) -> list:
    """Set up as the request says, wait for the gate, return the runner's arguments (or
    end here: a failed step, a gate closed without a word)."""
    given = request["setup"]
    setup = forkexec.Setup(**{**given, "sigdef": (),     # the zygote's are a fresh interpreter's
                              "groups": None if given.get("groups") is None else tuple(given["groups"]),
                              "rlimits": tuple(tuple(limit) for limit in given.get("rlimits", ()))})
    argv = request["argv"]
    before = (("environ", _environ, (request["env"], argv)), ("descriptors", close_others, (report, gate)))
    after = (("dumpable", _dumpable, ()),) if setup.uid is not None or setup.gid is not None else ()
    failed = forkexec.run_steps(forkexec.steps(DEVNULL, (stdout, stderr), request["cwd"], setup,
                                               before_drop=before, after_drop=after))
    if failed is not None:
        os.write(report, f"F{failed[0]}:{failed[1]}\n".encode())
        os._exit(127)
    import time

    time.tzset()                # the run's TZ
    os.close(report)
    if os.read(gate, 1) != b"g":
        os._exit(0)
    os.close(gate)
    return argv[2:]


def _environ(env: dict, argv: list) -> None:
    """os.environ becomes the run's (changed where it differs), and so do
    /proc/self/environ and cmdline (before the ids change: /proc/self/mem is ours to
    write until then)."""
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
    block = b"".join(os.fsencode(k) + b"=" + os.fsencode(v) + b"\0" for k, v in env.items())
    line = b"\0".join(os.fsencode(a) for a in argv) + b"\0"
    fd = os.open("/proc/self/mem", os.O_RDWR)
    try:
        for (start, end), data in ((ENV_AREA, block), (ARG_AREA, line)):
            room = end - start
            os.pwrite(fd, data[:room - 1].ljust(room, b"\0"), start)
    finally:
        os.close(fd)


def close_others(*keep: int) -> None:
    """Close every descriptor above 2 but those in `keep`."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 30)


_LIBC = None


def libc():
    """The C library through ctypes (loaded once, in the zygote, when a run changes ids)."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _dumpable() -> None:
    """A process that changed its ids is not dumpable (its /proc files become root's)
    until it execs; a run's process never execs, so it says so itself."""
    import ctypes

    if libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def fresh_python() -> None:
    """What a freshly started interpreter would have, done by a spare while it waits for
    its run: new random seeds, empty import caches, no module of aios (those in use stay
    reachable from the functions that use them)."""
    import importlib
    import random

    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    importlib.invalidate_caches()
    for name in [n for n in sys.modules if n == "aios" or n.startswith("aios.")]:
        del sys.modules[name]
