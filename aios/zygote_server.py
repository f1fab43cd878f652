"""The zygote: a Python process that has imported the runner and the modules to preload,
and forks runs of program jobs on request. The daemon's side is aios/zygote.py; what a
run's process does before the job's code is aios/zygote_run.py.

    python3 aios/zygote_server.py FD PRELOAD_JSON CGROUP_SCOPE ROOM

FD is a connected AF_UNIX stream socket to the daemon; CGROUP_SCOPE is where runs'
cgroups are made ("" without cgroup containment); ROOM only reserves space in the
command line. It imports the modules, says "ready" (with the files of what it loaded, or
why it must not be used: a module that failed to import, started a thread or left a
descriptor open), then serves one request at a time until the daemon hangs up.

A run's process is forked before its request (a "spare"), off the daemon's path: the
zygote forks a middle process, which enters a new cgroup of its own ("_py.ZPID.N" in the
scope: moving a process between cgroups waits for an RCU grace period, milliseconds),
forks the spare and exits, so the spare is reparented to the daemon (a child subreaper)
and is its child like a spawned process. The spare waits on a socket for its run.

A request is one run: the runner's argv, the run's env and cwd, its forkexec.Setup, and
three descriptors: the log, a gate and the daemon's report pipe. The zygote reaps the
spare's middle, hands it the request and answers the spare's pid and cgroup, then forks
the next spare. The daemon reads the report to its end (zygote_run.py), writes the
run's cgroup limits, watches the pid and opens the gate.

It never forks while another thread runs (threading and /proc/self/task are checked
before each fork): it answers with the threads instead. Imports aios.runner and
aios.zygote_run (and through it aios.supervisor.forkexec) by their package; nothing of
aios stays in a run's process.
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
    if sent < len(frame):       # (sendall of nothing would still write: EPIPE once the peer is done)
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
    RUN.areas()
    RUN.own_environ()
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
    return serve(sock, argv[2])


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
    global RUNNER, RUN
    import importlib

    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and os.path.realpath(sys.path[0] or ".") == here:
        del sys.path[0]
    sys.path.insert(0, os.path.dirname(here))
    try:
        for name in ("importlib.util", "random", "traceback", "aios.runner", "aios.zygote_run"):
            importlib.import_module(name)
    finally:
        del sys.path[0]
    if os.path.dirname(here) not in sys.path:
        sys.path.append(os.path.dirname(here))
    RUNNER, RUN = sys.modules["aios.runner"], sys.modules["aios.zygote_run"]


RUN = None          # aios.zygote_run, imported by _own_imports


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


SPARES = 2     # runs' processes kept forked ahead: a burst of runs finds the next one made


def serve(sock: socket.socket, scope: str) -> list | None:
    """Answer the daemon's requests, with SPARES processes forked ahead while no request
    waits. Returns the runner's arguments in a run's process; None in the zygote once
    the daemon hangs up."""
    import collections
    import select

    spares: collections.deque = collections.deque()
    while True:
        waiting = select.select([sock], [], [], 0 if len(spares) < SPARES else None)[0]
        if not waiting or not spares:
            spare = _fork_spare(scope)
            if isinstance(spare, list):     # the run's process: these were closed in its middle
                for held in [sock] + [other.sock for other in spares if other.sock is not None]:
                    held.detach()           # never close a number the job reuses
                return spare
            spares.append(spare)
            continue
        try:
            request, fds = receive(sock, max_fds=3)
        except (OSError, ValueError):
            return None
        if request is None:
            return None
        if not _serve_one(sock, request, fds, spares[0]):
            spares.popleft()


class Spare:
    """The next run's process, forked ahead: its socket (for its request), the pipe on
    which its middle says its pid, the middle, its cgroup; or, if it could not be
    forked, the answer to give instead (`problem`)."""

    __slots__ = ("sock", "reader", "middle", "cgroup", "pid", "problem")

    def __init__(self, sock=None, reader=-1, middle=0, cgroup=None, problem=None):
        self.sock, self.reader, self.middle, self.cgroup, self.problem = sock, reader, middle, cgroup, problem
        self.pid = 0


def _serve_one(sock: socket.socket, request: dict, fds: list, spare: Spare) -> bool:
    """Answer one request with the spare; True if the spare is still unused."""
    refusal = _refusal(request, fds)
    if refusal is not None:
        for fd in fds:
            os.close(fd)
        send(sock, refusal)
        return True
    if request["setup"].get("uid") is not None or request["setup"].get("gid") is not None:
        RUN.libc()              # ctypes loads here, once, rather than in each run's process
    reply = spare.problem or _ready(spare) or _hand_over(spare, request, fds)
    for fd in fds:
        os.close(fd)
    send(sock, reply)
    return False


def _refusal(request: dict, fds: list) -> dict | None:
    """Why this run does not go through the zygote (it is spawned instead)."""
    if len(fds) != 3 or not all(key in request for key in ("argv", "env", "cwd", "setup")):
        return {"refused": "a request needs argv, env, cwd, setup, the log, the gate and the report"}
    problem = RUN.room_problem(request["env"])
    return None if problem is None else {"refused": problem}


def _ready(spare: Spare) -> dict | None:
    """Wait for the spare's middle to say its pid and exit (then the spare is the
    daemon's child); the answer if it failed."""
    with open(spare.reader, "rb") as pipe:
        said = pipe.read().decode().split()
    os.waitpid(spare.middle, 0)
    for item in said:
        if item.startswith("P"):
            spare.pid = int(item[1:])
        elif item.startswith("F"):
            step, _, err = item[1:].partition(":")
            spare.sock.close()
            return {"failed": [step, int(err or 0)]}
    return None if spare.pid else {"failed": ["fork", 0]}


def _hand_over(spare: Spare, request: dict, fds: list) -> dict:
    try:
        send(spare.sock, request, tuple(fds))
    except OSError as exc:
        return {"refused": f"its forked process was gone ({exc})"}
    finally:
        spare.sock.close()
    return {"pid": spare.pid, "cgroup": spare.cgroup}


def _fork_spare(scope: str) -> Spare | list:
    """Fork the middle of the next spare (the zygote does not wait for it); in the
    spare, once its request came, the runner's arguments."""
    import signal

    problem = _thread_problem()
    if problem:
        return Spare(problem={"refused": problem, "fatal": True})
    try:
        place = _new_cgroup(scope) if scope else None
    except OSError as exc:
        return Spare(problem={"failed": ["cgroup", exc.errno or 0]})
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader, writer = os.pipe()
    _flush()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        middle = os.fork()
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for end in (ours, theirs):
            end.close()
        os.close(reader)
        os.close(writer)
        return Spare(problem={"failed": ["fork", exc.errno or 0]})
    if middle == 0:
        ours.detach()
        return _middle(place, theirs.detach(), writer, blocked)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    theirs.close()
    os.close(writer)
    return Spare(sock=ours, reader=reader, middle=middle, cgroup=place)


_CGROUPS = iter(range(1, 1 << 62))


def _new_cgroup(scope: str) -> str:
    """A new cgroup in the scope for the next spare, named so that no job's can be."""
    while True:
        path = os.path.join(scope, f"_py.{os.getpid()}.{next(_CGROUPS)}")
        try:
            os.mkdir(path, 0o755)
            return path
        except FileExistsError:
            continue


def _middle(place: str | None, fd: int, writer: int, mask) -> list:
    """The middle: keep only what the spare needs, enter the cgroup, fork the spare, say
    its pid ("P<pid>") or what failed ("F<step>:<errno>"), exit. Nothing of it ever
    returns into the zygote's code but the spare."""
    import signal

    step, said = "cgroup", ""
    try:
        RUN.close_others(fd, writer, RUN.DEVNULL)
        if place is not None:
            with open(os.path.join(place, "cgroup.procs"), "w") as procs:
                procs.write("0")
        step = "fork"
        pid = os.fork()
        if pid == 0:
            os.close(writer)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            return _spare(fd)
        said = f"P{pid}"
    except BaseException as exc:
        said = f"F{step}:{getattr(exc, 'errno', 0) or 0}"
    try:
        os.write(writer, said.encode() + b"\n")
    finally:
        os._exit(0)         # the zygote may be gone (EPIPE): the spare sees it and ends


def _spare(fd: int) -> list:
    """The spare: wait for its run, then become it (zygote_run.prepare)."""
    sock = socket.socket(fileno=fd)
    try:
        request, fds = receive(sock, max_fds=3)
    except BaseException:
        os._exit(0)
    if request is None or len(fds) != 3:
        os._exit(0)             # the zygote is gone: nothing to run
    sock.detach()               # closed in the set-up, with every other descriptor
    return RUN.prepare(request, *fds)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


if __name__ == "__main__":
    job = main(sys.argv[1:])
    if job is None:
        sys.exit(0)
    RUNNER.run(job)
