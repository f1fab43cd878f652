"""The zygote: a Python process that has imported the runner and the modules to preload,
and forks runs of program jobs on request. The daemon's side is aios/zygote.py.

    python3 aios/zygote_server.py FD PRELOAD_JSON ROOM

FD is a connected AF_UNIX stream socket to the daemon; ROOM only reserves space in the
command line. It imports the modules, says "ready" (with the files of what it loaded, or
why it must not be used: a module that failed to import, started a thread or left a
descriptor open), then serves one request at a time until the daemon hangs up.

A request is one run: the runner's argv, the run's env and cwd, its forkexec.Setup and
cgroup, and three descriptors: the log, a gate and a report pipe. The zygote forks the
middle process and answers "forked"; the middle enters the run's cgroup, forks the run's
process, writes its pid on the report and exits, so the run's process is reparented to
the daemon (a child subreaper) and is its child like a spawned one. The daemon reads the
report to its end: the run's process closes it once set up, or writes the step that
failed. The run's process takes forkexec's steps (signals, process group, stdio, limits, umask, ids,
cwd) and, besides: its environment and command line written where /proc/PID/environ and
cmdline read them (adoption finds the run's token there), every other descriptor closed,
Python's own signal dispositions, fresh random seeds, the AIOS modules forgotten. It
waits on the gate, which the daemon opens once it watches the pid; a gate closed without
a word (the daemon gave up on the request) ends it before it runs anything, so a run is
never started twice. Then the runner imports the job's file fresh and calls its function
as `python3 runner.py` does, and the interpreter exits as it would (atexit, threads).

It never forks while another thread runs (threading and /proc/self/task are checked
before each fork): it answers with the threads instead. Imports aios.supervisor's child
set-up and aios.runner, by their package; nothing of aios stays in a run's process.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys

_HEADER = struct.Struct("!I")
MAX_MESSAGE = 8 << 20           # a frame larger than this is a broken peer
RUNNER = None                   # aios.runner, once imported (a run's process calls it)


# ---------------------------------------------------------------- frames (both sides)

def send(sock: socket.socket, message: dict, fds: tuple = ()) -> None:
    """One JSON frame, with `fds` passed along (SCM_RIGHTS)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    frame = _HEADER.pack(len(data)) + data
    sent = socket.send_fds(sock, [frame], list(fds)) if fds else 0
    sock.sendall(frame[sent:])


def receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list]:
    """The next frame and the descriptors that came with it; (None, []) once the peer
    has hung up. ValueError for a frame that is not ours."""
    head, fds = _first(sock, max_fds)
    if not head:
        return None, fds
    head += _exactly(sock, _HEADER.size - len(head))
    (size,) = _HEADER.unpack(head)
    if size > MAX_MESSAGE:
        raise ValueError(f"frame of {size} bytes")
    message = json.loads(_exactly(sock, size))
    if not isinstance(message, dict):
        raise ValueError("frame is not an object")
    return message, fds


def _first(sock: socket.socket, max_fds: int) -> tuple[bytes, list]:
    if not max_fds:
        return sock.recv(_HEADER.size), []
    data, fds, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds)
    return data, fds


def _exactly(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise ValueError("the peer hung up in the middle of a frame")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- the zygote

def main(argv: list[str]) -> list | None:
    """Preload, then serve the daemon. Returns the runner's arguments in a run's process;
    None in the zygote once the daemon has hung up (or it must not be used)."""
    started_with = set(sys.modules)
    sock = socket.socket(fileno=int(argv[0]))
    _own_imports()
    before = _descriptors()
    problem = _preload(json.loads(argv[1])) or _thread_problem() or _descriptor_problem(before)
    send(sock, {"ready": True, "pid": os.getpid(), "problem": problem,
                "files": _files(set(sys.modules) - started_with)})
    if problem:
        return None
    import gc

    _fresh_signals()
    gc.collect()
    gc.freeze()         # the preloaded objects stay out of the children's collections: fewer copied pages
    return serve(sock)


def _fresh_signals() -> None:
    """Every signal as a freshly started interpreter has it (SIGINT raises
    KeyboardInterrupt, SIGPIPE and SIGXFSZ are ignored, the rest are default), whatever a
    preloaded module did: the runs' processes inherit them."""
    import signal

    fresh = {signal.SIGINT: signal.default_int_handler}
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            fresh[getattr(signal, name)] = signal.SIG_IGN
    for sig in signal.Signals:
        if int(sig) < 32 and sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, fresh.get(sig, signal.SIG_DFL))


def _own_imports() -> None:
    """aios.runner and the child set-up, imported by their package: the folder of this
    script leaves sys.path (it would shadow jobs' modules) and the one holding aios is
    searched last, as the runner does for jobs. What the runner uses on each call (to
    load a job, report its exception) comes now, once."""
    global RUNNER, forkexec
    import importlib

    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and os.path.realpath(sys.path[0] or ".") == here:
        del sys.path[0]
    sys.path.insert(0, os.path.dirname(here))
    try:
        for name in ("importlib.util", "random", "traceback", "aios.runner", "aios.supervisor.forkexec"):
            importlib.import_module(name)
    finally:
        del sys.path[0]
    if os.path.dirname(here) not in sys.path:
        sys.path.append(os.path.dirname(here))
    RUNNER, forkexec = sys.modules["aios.runner"], sys.modules["aios.supervisor.forkexec"]


forkexec = None     # aios.supervisor.forkexec, imported by _own_imports


def _preload(names: list) -> str | None:
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as exc:    # its import may raise anything, SystemExit included
            return f"preloading {name!r} failed: {type(exc).__name__}: {exc}"
    return None


def _thread_problem() -> str | None:
    """Why a fork now would be unsafe: another thread runs (it would be missing in the
    child, holding whatever lock it held)."""
    try:
        tasks = len(os.listdir("/proc/self/task"))
    except OSError:
        tasks = 1
    threading = sys.modules.get("threading")
    names = [t.name for t in threading.enumerate() if t is not threading.main_thread()] if threading else []
    if tasks <= 1 and not names:
        return None
    shown = f" ({', '.join(names[:5])})" if names else ""
    return (f"{max(tasks - 1, len(names))} other thread(s) running{shown}: a preloaded module started a "
            "thread, and a fork keeps only the calling one (for numpy and other BLAS users set "
            "OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1 in [python] env, or preload nothing that starts threads)")


def _descriptors() -> dict:
    """What each open descriptor refers to (the listing's own, closed by then, left out)."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            found[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return found


def _descriptor_problem(before: dict) -> str | None:
    """Descriptors a preloaded module left open (a socket, a file): the runs' processes
    close every descriptor, so what the module holds would be dead in them."""
    held = [target for fd, target in sorted(_descriptors().items()) if before.get(fd) != target]
    if not held:
        return None
    return (f"preloading left {len(held)} descriptor(s) open ({', '.join(held[:5])}): a module that holds a "
            "socket or a file from its import is unsafe to preload, its runs would find it closed")


def _files(names: set) -> list:
    """[path, mtime_ns, size] of the source files of the modules loaded since start-up
    (this script, the runner, the preloaded modules): a change to one restarts the zygote."""
    found = {os.path.abspath(__file__)}
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(path, str):
            found.add(path)
    files = []
    for path in sorted(found):
        try:
            st = os.stat(path)
        except OSError:
            continue
        files.append([path, st.st_mtime_ns, st.st_size])
    return files


def serve(sock: socket.socket) -> list | None:
    while True:
        try:
            request, fds = receive(sock, max_fds=3)
        except (OSError, ValueError):
            return None
        if request is None:
            return None
        job = _serve_one(sock, request, fds)
        if job is not None:
            sock.detach()       # the run's process closed its descriptor: never close a number it reuses
            return job


def _serve_one(sock: socket.socket, request: dict, fds: list) -> list | None:
    """Answer one request; the run's process returns its runner arguments from here."""
    refusal = _refusal(request, fds)
    if refusal is not None:
        for fd in fds:
            os.close(fd)
        send(sock, refusal)
        return None
    if request["setup"].get("uid") is not None:
        _libc()                 # ctypes loads here, once, rather than in each run's process
    return _fork(sock, request, *fds)


def _refusal(request: dict, fds: list) -> dict | None:
    """Why this request is not forked: the zygote is unsafe to fork from now (fatal: it
    will not get better), or this run does not fit it (then it is spawned)."""
    problem = _thread_problem()
    if problem:
        return {"refused": problem, "fatal": True}
    if len(fds) != 3 or not all(key in request for key in ("argv", "env", "cwd", "setup")):
        return {"refused": "a request needs argv, env, cwd, setup, the log, the gate and the report", "fatal": False}
    problem = _room_problem(request["env"])
    return None if problem is None else {"refused": problem, "fatal": False}


def _fork(sock: socket.socket, request: dict, log_fd: int, gate: int, report: int) -> list | None:
    """Fork the middle; say so; reap it. The middle and the run's process write what
    the daemon must know on `report`, which the daemon reads itself."""
    import signal

    _flush()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        middle = os.fork()
        if middle == 0:
            return _middle(request, log_fd, gate, report)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    for fd in (log_fd, gate, report):
        os.close(fd)
    send(sock, {"forked": middle})
    os.waitpid(middle, 0)
    return None


def _middle(request: dict, log_fd: int, gate: int, report: int) -> list:
    """The middle process: into the run's cgroup, fork the run's process, say its pid
    ("P<pid>") or what failed ("F<step>:<errno>"), exit."""
    step = "cgroup"
    try:
        if request.get("cgroup"):
            with open(os.path.join(request["cgroup"], "cgroup.procs"), "w") as procs:
                procs.write("0")
        step = "fork"
        pid = os.fork()
    except BaseException as exc:
        _say(report, f"F{step}:{getattr(exc, 'errno', 0) or 0}")
        os._exit(0)
    if pid == 0:
        return _run_process(request, log_fd, gate, report)
    _say(report, f"P{pid}")
    os._exit(0)


def _run_process(request: dict, log_fd: int, gate: int, writer: int) -> list:
    """The run's process: set up as a spawned run is, wait for the gate, return the
    runner's arguments (or end here)."""
    setup = request["setup"]
    setup = forkexec.Setup(**{**setup, "sigdef": (),   # the zygote's are a fresh interpreter's (_fresh_signals)
                              "groups": None if setup.get("groups") is None else tuple(setup["groups"]),
                              "rlimits": tuple(tuple(limit) for limit in setup.get("rlimits", ()))})
    argv, env = request["argv"], request["env"]
    before = (("environ", _environ, (env, argv)), ("descriptors", _close_others, (writer, gate)))
    after = (("dumpable", _dumpable, ()),) if setup.uid is not None else ()
    failed = forkexec.run_steps(forkexec.steps(_DEVNULL, log_fd, request["cwd"], setup,
                                               before_drop=before, after_drop=after))
    if failed is not None:
        _say(writer, f"F{failed[0]}:{failed[1]}")
        os._exit(127)
    _fresh_python()
    os.close(writer)
    if os.read(gate, 1) != b"g":
        os._exit(0)             # the daemon gave up on this request: nothing ran
    os.close(gate)
    return argv[2:]


_DEVNULL = None     # /dev/null, opened once (the run's stdin)
_ENV_AREA = _ARG_AREA = (0, 0)


def _areas() -> None:
    """Where the kernel reads /proc/self/environ and cmdline from (stat fields 48-51)."""
    global _ENV_AREA, _ARG_AREA, _DEVNULL
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    fields = data[data.rindex(b")") + 2:].split()
    _ARG_AREA = (int(fields[45]), int(fields[46]))
    _ENV_AREA = (int(fields[47]), int(fields[48]))
    _DEVNULL = os.open(os.devnull, os.O_RDONLY)


def _room_problem(env: dict) -> str | None:
    size = sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())
    room = _ENV_AREA[1] - _ENV_AREA[0]
    return None if size <= room else f"its environment ({size} bytes) is larger than the zygote's room ({room})"


def _own_environ() -> None:
    """Once, in the zygote: every string of C's environ copied (putenv copies), so that
    none points into the memory the run's processes overwrite."""
    saved = dict(os.environ)
    saved.pop(ROOM_VAR, None)
    os.environ.clear()
    os.environ.update(saved)


ROOM_VAR = "AIOS_ZYGOTE_ROOM"


def _environ(env: dict, argv: list) -> None:
    """os.environ becomes the run's (changed where it differs), and so do
    /proc/self/environ and cmdline: written into the memory the kernel reads them from
    (before the ids change: /proc/self/mem is ours to write until then)."""
    for name in [name for name in os.environ if name not in env]:
        del os.environ[name]
    for name, value in env.items():
        if os.environ.get(name) != value:
            os.environ[name] = value
    block = b"".join(os.fsencode(k) + b"=" + os.fsencode(v) + b"\0" for k, v in env.items())
    line = b"\0".join(os.fsencode(a) for a in argv) + b"\0"
    fd = os.open("/proc/self/mem", os.O_RDWR)
    try:
        for (start, end), data in ((_ENV_AREA, block), (_ARG_AREA, line)):
            room = end - start
            os.pwrite(fd, data[:room - 1].ljust(room, b"\0"), start)
    finally:
        os.close(fd)


def _close_others(*keep: int) -> None:
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 30)


_LIBC = None
_PR_SET_DUMPABLE = 4


def _libc():
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _dumpable() -> None:
    """A process that changed its ids is not dumpable (its /proc files become root's)
    until it execs; a run's process never execs, so it says so itself."""
    import ctypes

    if _libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _fresh_python() -> None:
    """What a freshly started interpreter would have: the run's time zone, new random
    seeds, empty import caches, no module of aios."""
    import importlib
    import random
    import time

    time.tzset()
    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()
    importlib.invalidate_caches()
    for name in [n for n in sys.modules if n == "aios" or n.startswith("aios.")]:
        del sys.modules[name]


def _say(fd: int, text: str) -> None:
    os.write(fd, text.encode() + b"\n")


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


if __name__ == "__main__":
    _areas()
    _own_environ()
    job = main(sys.argv[1:])
    if job is None:
        sys.exit(0)
    RUNNER.run(job)
