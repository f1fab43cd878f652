"""The zygote: a Python process that has imported the runner and the modules to preload,
and forks runs of program jobs on request. The daemon's side is aios/zygote.py; what a
run's process does before the job's code is aios/zygote_run.py.

    python3 aios/zygote_server.py FD PRELOAD_JSON CGROUP_SCOPE ROOM

FD is a connected AF_UNIX stream socket to the daemon; CGROUP_SCOPE is where runs'
cgroups are made ("" without cgroup containment); ROOM only reserves space in the
command line. It imports the modules, says "ready" (with the files of what it loaded, or
why it must not be used: a module that failed to import, started a thread or left a
descriptor open), then serves one request at a time until the daemon hangs up.

A run's process is forked before its request (a "spare"): the zygote forks a middle
process, which enters a new cgroup of its own ("_py.ZPID.N" in the scope: moving a
process between cgroups waits for an RCU grace period, milliseconds), forks the spare
and exits, so the spare is reparented to the daemon (a child subreaper) and is its child
like a spawned process. Once the middle is reaped, the zygote offers the spare to the
daemon (its pid, its cgroup and its socket, over SCM_RIGHTS), keeping SPARES offered
or being made (several middles at once); the daemon says "took" for each it uses. The
zygote is on no run's path: the daemon sends the run (argv, env, cwd, forkexec.Setup,
its stdout and stderr, a gate and a report pipe)
straight to the spare, which sets itself up (aios/zygote_run.py) while the daemon reads
the report, then writes the run's cgroup limits, watches the pid and opens the gate.

It never forks while another thread runs (threading and /proc/self/task are checked
before each fork): it tells the daemon why instead, and stops. Imports aios.runner and
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
    data, fds, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds, socket.MSG_CMSG_CLOEXEC)
    return data, fds        # close-on-exec: never inherited by what the daemon spawns


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
    ready = {"ready": True, "pid": os.getpid(), "problem": problem, "room": RUN.ENV_AREA[1] - RUN.ENV_AREA[0],
             "files": _files(set(sys.modules) - started_with)}
    if not _tell(sock, ready) or problem:    # the daemon died while we preloaded, or we must not serve
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
    if os.geteuid() == 0:
        RUN.libc()      # ctypes, once, for the runs that change ids (only root may)


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


SPARES = 2     # runs' processes offered or being made ahead: a burst of runs finds them made


def serve(sock: socket.socket, scope: str) -> list | None:
    """Keep the daemon supplied with SPARES spares (it says "took" for each it uses),
    several made at once. Returns the runner's arguments in a run's process; None in
    the zygote once the daemon hangs up, or once it must not fork any more (it said
    why)."""
    import select

    offered, making = 0, {}     # making: report pipe -> (middle, our end of the spare's socket, cgroup)
    while True:
        while offered + len(making) < SPARES:
            made = _start_spare(scope)
            if isinstance(made, list):      # the run's process: its middle closed these
                for held in [sock] + [ours for _, ours, _ in making.values()]:
                    held.detach()           # never close a number the job reuses
                return made
            if isinstance(made, dict):      # no spare: why (a failure stands for a spare: it is taken)
                offered += 1
                if not _tell(sock, made) or made.get("problem"):
                    return None
                continue
            making[made[0]] = made[1]
        for fd in select.select([sock] + list(making), [], [])[0]:
            offered += _offer(sock, fd, *making.pop(fd)) if fd is not sock else -_took(sock)


def _tell(sock: socket.socket, message: dict, fds: tuple = ()) -> bool:
    """Send to the daemon; False once it has hung up."""
    try:
        send(sock, message, fds)
    except OSError:
        return False
    return True


def _took(sock: socket.socket) -> int:
    """How many spares the daemon says it took; the daemon hung up: SystemExit."""
    try:
        message, _ = receive(sock)
    except (OSError, ValueError):
        message = None
    if message is None:
        raise SystemExit(0)
    return int(message.get("took", 0))


def _start_spare(scope: str) -> tuple | dict | list:
    """Fork the middle of the next spare: (its report pipe, (the middle, our end of the
    spare's socket, its cgroup)); or the message saying why not ({"problem": why} if no
    fork may happen, {"failed": [step, errno]} if this one could not be made). In the
    spare, once its run came: the runner's arguments."""
    problem = _thread_problem()
    if problem:
        return {"problem": problem}
    try:
        place = _new_cgroup(scope) if scope else None
    except OSError as exc:
        return {"failed": ["cgroup", exc.errno or 0]}
    forked = _fork_middle(place)
    if isinstance(forked, (list, dict)):
        return forked
    middle, ours, reader = forked
    return reader, (middle, ours, place)


def _offer(sock: socket.socket, reader: int, middle: int, ours: socket.socket, place: str | None) -> int:
    """The middle has said the spare's pid (or what failed) and exits: once it is
    reaped, the spare is the daemon's child; offer it (with its socket). Returns 1."""
    with open(reader, "rb") as pipe:
        said = pipe.read().decode().split()
    os.waitpid(middle, 0)
    pid = next((int(item[1:]) for item in said if item.startswith("P")), None)
    if pid is None:
        ours.close()
        step, _, err = next((item[1:] for item in said if item.startswith("F")), "fork:0").partition(":")
        told = _tell(sock, {"failed": [step, int(err or 0)]})
    else:
        told = _tell(sock, {"spare": pid, "cgroup": place}, (ours.fileno(),))
        ours.close()
    if not told:
        raise SystemExit(0)     # the daemon hung up
    return 1


def _fork_middle(place: str | None) -> tuple | dict | list:
    """Fork the middle: (its pid, our end of the spare's socket, the pipe it reports on)
    in the zygote; the runner's arguments in the spare."""
    import signal

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    reader, writer = os.pipe()
    RUNNER.flush_stdio()        # nothing buffered is written twice
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        middle = os.fork()
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        for fd in (ours.detach(), theirs.detach(), reader, writer):
            os.close(fd)
        return {"failed": ["fork", exc.errno or 0]}
    if middle == 0:
        ours.detach()
        return _middle(place, theirs.detach(), writer, blocked)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    theirs.close()
    os.close(writer)
    return middle, ours, reader


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
    """The spare: made fresh, wait for its run, then become it (zygote_run.prepare)."""
    sock = socket.socket(fileno=fd)
    try:
        RUN.fresh_python()
        request, fds = receive(sock, max_fds=4)
    except BaseException:
        os._exit(0)
    if request is None or len(fds) != 4:
        os._exit(0)             # the zygote is gone: nothing to run
    sock.detach()               # closed in the set-up, with every other descriptor
    return RUN.prepare(request, *fds)


if __name__ == "__main__":
    job = main(sys.argv[1:])
    if job is None:
        sys.exit(0)
    RUNNER.run(job)
