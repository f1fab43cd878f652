"""The daemon's side of the zygotes, the fork servers of aios/zygote_server.py: one per
Python interpreter, preload list and start-up variables in use, started as the daemon
starts (`prepare`, for its program jobs) or when a run first needs it, watched in the
daemon's loop, stopped when the daemon ends.

`Zygotes.spawn(argv, env, cwd, log_fd, preload=..., **spawn_options)` starts one run of
a program job through its zygote, as supervisor.spawn(..., via=...) does: the run's
process is the daemon's own child (the daemon becomes a child subreaper first), in its
cgroup, with the Proc a spawned one has; failures of the run itself (its cwd, its user)
are SpawnErrors as from spawn. Or it raises `Unavailable` with the reason, and the
caller spawns the run: the zygote is starting (the loop never waits for it: it says it
is ready through its socket, watched in the loop, and the runs after that use it), it
died and waits out its backoff, it was refused (a preloaded module failed to import,
started a thread, or left a descriptor open), or this run does not fit it (its
environment is too large).

When a run is requested the source files of what the zygote loaded are checked (mtime
and size; once per turn of the loop): a change starts a new zygote. A zygote that dies
is seen through its pidfd and started again on demand after a backoff (BACKOFF_FIRST,
doubling up to BACKOFF_MAX; a refused one after REFUSED_RETRY, or at once when one of
its files changes). At most MAX_ZYGOTES run; the least recently used one makes room.

Start-up variables are those the interpreter reads as it starts (PYTHON*, LANG,
LANGUAGE, LC_*) and those of [python] env: a zygote starts with the daemon's
environment plus the run's values of these, and every other variable of a run is set
in its process before the job's module is imported. Imports supervisor (its start,
Proc, cgroups and child set-up), zygote_server's frames and zygote_run's room variable;
loaded only with the first program run.
"""
from __future__ import annotations

import collections
import json
import os
import select
import signal
import socket
import time
from functools import partial
from pathlib import Path

from . import supervisor
from .record import record
from .supervisor import forkexec, procs
from .zygote_run import ROOM_VAR
from .zygote_server import receive, send

__all__ = ["Zygotes", "Unavailable", "Key", "startup_variables"]

SERVER = str(Path(__file__).with_name("zygote_server.py"))
WARMING = 1.0           # seconds the daemon's first jobs wait (its loop turning) for a zygote to be ready
REPLY_TIMEOUT = 2.0     # a zygote that takes longer to answer is broken: killed, started again later
MAX_ZYGOTES = 4
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 60.0
STEADY = 30.0           # seconds a zygote must have lived for its death to count as the first
REFUSED_RETRY = 300.0
ENV_ROOM = 32 * 1024    # bytes of environment a run may have to go through a zygote
ARG_ROOM = 4 * 1024     # bytes of its command line shown in /proc/PID/cmdline (the rest is cut)


class Unavailable(Exception):
    """This run cannot go through a zygote now; the message says why (spawn it)."""


@record
class Key:
    """What a zygote is shared by: the interpreter, the modules preloaded, and the values
    of the start-up variables."""

    interpreter: str
    preload: tuple
    startup: tuple      # ((name, value), ...) sorted


def startup_variables(env: dict, names=()) -> tuple:
    """The (name, value) pairs of env that a zygote must have been started with."""
    return tuple(sorted((k, v) for k, v in env.items()
                        if k.startswith(("PYTHON", "LC_")) or k in ("LANG", "LANGUAGE") or k in names))


@record
class Spare:
    """A run's process the zygote forked ahead: the daemon's child, in its cgroup (None
    without cgroup containment), waiting on `sock` for its run."""

    pid: int
    sock: object
    cgroup: str | None


def _end(spare: Spare) -> None:
    """A spare that will not run: killed (our child: reaped with the orphans), its
    cgroup removed once empty."""
    try:
        os.kill(spare.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if spare.cgroup is not None:
        supervisor.cgroup.remove(spare.cgroup)


class Zygote:
    """One key's zygote: its process and socket while it runs, and what is remembered
    across its restarts (deaths, when to try again, why it is not used)."""

    __slots__ = ("key", "proc", "pid", "sock", "state", "files", "why", "born", "deaths", "retry_at",
                 "checked", "spares", "room")

    def __init__(self, key: Key):
        self.key, self.proc, self.pid, self.sock, self.state = key, None, None, None, "gone"
        self.files: list = []
        self.why, self.born, self.deaths, self.retry_at = "", 0.0, 0, 0.0
        self.checked = None     # the loop's boot time when its files were last looked at
        self.spares = collections.deque()    # Spare (or forkexec.Failed) offered and not yet taken
        self.room = 0           # bytes of environment its runs may have

    def describe(self) -> str:
        preload = ", ".join(self.key.preload) or "nothing"
        return f"zygote {self.pid or '-'} ({self.key.interpreter}, preloading {preload})"


class Zygotes:
    def __init__(self, loop, report, base_env: dict, names=tuple):
        """loop: the daemon's (add_reader, remove_reader, boot); report(name, message):
        an event; base_env: what jobs inherit from the daemon; names(): the variables of
        [python] env now (start-up variables too)."""
        self.loop, self.report, self.base_env, self.names = loop, report, dict(base_env), names
        self.zygotes: dict[Key, Zygote] = {}
        self.ending: set = set()          # Procs of zygotes stopped and not yet reaped

    # ================================================================ a run
    def prepare(self, argv: list, env: dict, preload: tuple = ()) -> None:
        """Start the zygote a run like this would fork from, if it is not there; never waits."""
        try:
            self._ready(self._key(argv, env, preload))
        except Unavailable:
            pass

    def starting(self) -> bool:
        """A zygote started less than WARMING seconds ago has not said it is ready yet."""
        return any(z.state == "starting" and self.loop.boot - z.born < WARMING for z in self.zygotes.values())

    def spawn(self, argv: list, env: dict, cwd: str, log_fd, *, preload: tuple = (), **options):
        """A run of a program job through its zygote (see the module); Unavailable if not."""
        zygote = self._ready(self._key(argv, env, preload))
        gate, opener = os.pipe2(os.O_CLOEXEC)
        try:
            proc = supervisor.spawn(argv, env, cwd, log_fd, via=partial(self._fork, zygote, gate), **options)
        except BaseException:
            os.close(opener)        # closed without a word: a process that was forked ends unrun
            raise
        finally:
            os.close(gate)
        os.write(opener, b"g")      # watched: now it may run
        os.close(opener)
        return proc

    def _key(self, argv: list, env: dict, preload) -> Key:
        """The zygote a run of argv with env and preload forks from."""
        return Key(interpreter=argv[0], preload=tuple(preload), startup=startup_variables(env, self.names()))

    def _fork(self, zygote: Zygote, gate: int, argv, env, cwd, log_fds: tuple, setup: forkexec.Setup) -> tuple:
        """(pid, cgroup) of the run's process: a spare of the zygote, given this run, set
        up and waiting on the gate."""
        size = sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())
        if size > zygote.room:
            raise Unavailable(f"{zygote.describe()}: the run's environment ({size} bytes) is larger than "
                              f"the zygote's room ({zygote.room})")
        spare = self._next_spare(zygote)
        request = {"argv": argv, "env": env, "cwd": cwd,
                   "setup": {name: getattr(setup, name) for name in ("uid", "gid", "groups", "umask", "rlimits",
                                                                      "nice", "ioprio")}}
        reader, writer = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                send(spare.sock, request, (*log_fds, gate, writer))
            finally:
                os.close(writer)
                spare.sock.close()
            return _set_up(reader, spare.pid), spare.cgroup
        except OSError as exc:      # it was gone, or hangs: ours to end
            _end(spare)
            raise Unavailable(f"{zygote.describe()}: its forked process {spare.pid} failed ({exc})") from None
        finally:
            os.close(reader)

    def _next_spare(self, zygote: Zygote) -> Spare:
        """The oldest spare the zygote offered (waiting for one if none is there), said
        taken; forkexec.Failed if the zygote could not make it."""
        try:
            self._take_offers(zygote, wait=not zygote.spares)
            if not zygote.spares:
                raise ValueError("it offered no process to fork a run into")
            offer = zygote.spares.popleft()
            send(zygote.sock, {"took": 1})
        except (OSError, ValueError) as exc:
            self._lost(zygote, f"failed to offer a process ({exc})")
            raise Unavailable(zygote.why) from None
        if isinstance(offer, forkexec.Failed):
            raise offer
        return offer

    def _take_offers(self, zygote: Zygote, wait: bool) -> None:
        """Read what the zygote offered: spares, a spare it could not make (a Failed, for
        the run that takes it), or why it must not be used."""
        timeout = REPLY_TIMEOUT if wait else 0.0
        while select.select([zygote.sock], [], [], timeout)[0]:
            message, fds = receive(zygote.sock, max_fds=1)
            if message is None:
                raise ValueError("it hung up")
            if "spare" in message and fds:
                zygote.spares.append(Spare(pid=int(message["spare"]), sock=socket.socket(fileno=fds[0]),
                                           cgroup=message["cgroup"]))
            elif "failed" in message:
                zygote.spares.append(forkexec.Failed(str(message["failed"][0]), int(message["failed"][1])))
            elif "problem" in message:
                self._refuse(zygote, message["problem"])
                raise Unavailable(zygote.why)
            timeout = 0.0

    # ================================================================ which zygote
    def _ready(self, key: Key) -> Zygote:
        zygote = self.zygotes.pop(key, None) or Zygote(key)
        self.zygotes[key] = zygote          # most recently used last
        changed = self._changed(zygote) if zygote.state in ("ready", "refused") else None
        zygote.checked = self.loop.boot
        if changed:
            self._stop(zygote)
            zygote.state, zygote.retry_at, zygote.deaths = "gone", 0.0, 0
            self.report("zygote_restart", f"{zygote.describe()}: {changed} changed; starting a new one")
        if zygote.state in ("gone", "refused") and self.loop.boot >= zygote.retry_at:
            self._start(zygote)
        if zygote.state != "ready":
            raise Unavailable(self._why_not(zygote))
        return zygote

    def _why_not(self, zygote: Zygote) -> str:
        if zygote.state == "starting":
            return f"{zygote.describe()} is still starting"
        if zygote.state == "gone":
            return f"{zygote.why}; it starts again in {max(0.0, zygote.retry_at - self.loop.boot):.1f} s"
        return zygote.why

    def _changed(self, zygote: Zygote) -> str | None:
        """The first file of what the zygote loaded that changed (or vanished) since; looked
        at once per turn of the loop (a burst of runs in one turn stats them once)."""
        if zygote.checked == self.loop.boot:
            return None
        for path, mtime, size in zygote.files:
            try:
                st = os.stat(path)
            except OSError:
                return path
            if st.st_mtime_ns != mtime or st.st_size != size:
                return path
        return None

    # ================================================================ a zygote's life
    def _start(self, zygote: Zygote) -> None:
        self._make_room(zygote)
        if not supervisor.HAS_PIDFD:
            self._refuse(zygote, "this kernel has no pidfds (Linux 5.3+), which the daemon watches zygotes by")
            return
        if not supervisor.become_subreaper():
            self._refuse(zygote, "the daemon cannot become a child subreaper here (PR_SET_CHILD_SUBREAPER), "
                                 "so a zygote's children could not be its own")
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            pid = _spawn_server(zygote.key, self._environment(zygote.key), theirs.fileno())
            zygote.proc = procs.track(pid, "zygote")
            zygote.pid = pid
        except OSError as exc:
            ours.close()
            zygote.why = f"zygote for {zygote.key.interpreter} could not start: {exc}"
            self._backoff(zygote)
            return
        finally:
            theirs.close()
        ours.settimeout(REPLY_TIMEOUT)
        zygote.sock, zygote.state, zygote.born = ours, "starting", self.loop.boot
        self.loop.add_reader(zygote.proc.pidfd, self._exited, zygote, zygote.proc)
        self.loop.add_reader(ours.fileno(), self._ready_arrived, zygote)

    def _environment(self, key: Key) -> dict:
        env = {**self.base_env, **dict(key.startup)}
        size = sum(len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items())
        env[ROOM_VAR] = " " * max(0, ENV_ROOM - size - len(ROOM_VAR) - 2)
        return env

    def _make_room(self, zygote: Zygote) -> None:
        running = [z for z in self.zygotes.values() if z.sock is not None and z is not zygote]
        for oldest in running[:max(0, len(running) - MAX_ZYGOTES + 1)]:
            self._stop(oldest)
            oldest.state, oldest.why = "gone", f"{oldest.describe()} was stopped to make room for another"
        while len(self.zygotes) > 4 * MAX_ZYGOTES:
            del self.zygotes[next(iter(self.zygotes))]

    def _ready_arrived(self, zygote: Zygote) -> None:
        """Its first message: ready, or why it must not be used."""
        if zygote.state != "starting":
            return
        self.loop.remove_reader(zygote.sock.fileno())
        try:
            message, _ = receive(zygote.sock)
        except (OSError, ValueError) as exc:
            message = {"problem": f"it broke before it was ready ({exc})"}
        if message is None:
            message = {"problem": "it exited before it was ready"}
        zygote.files, zygote.room = message.get("files") or [], int(message.get("room") or 0)
        if message.get("problem"):
            self._refuse(zygote, message["problem"])
        else:
            zygote.state = "ready"

    def _refuse(self, zygote: Zygote, problem: str) -> None:
        """Not to be used: said once (again only if the reason changes)."""
        why = f"{zygote.describe()} is not used: {problem}"
        self._stop(zygote)
        if why.partition(": ")[2] != zygote.why.partition(": ")[2] or zygote.state != "refused":
            self.report("zygote_refused", why + "; its runs are spawned")
        zygote.state, zygote.why, zygote.retry_at = "refused", why, self.loop.boot + REFUSED_RETRY

    def _lost(self, zygote: Zygote, how: str) -> None:
        """It died or broke: killed if need be, started again after a backoff."""
        what = zygote.describe()
        proc = zygote.proc
        self._stop(zygote)
        if proc is not None:
            supervisor.signal_group(proc, signal.SIGKILL)
        zygote.why = f"{what} {how}"
        self._backoff(zygote)
        self.report("zygote_exited", f"{zygote.why}; runs are spawned until it starts again in "
                                     f"{zygote.retry_at - self.loop.boot:.1f} s")

    def _backoff(self, zygote: Zygote) -> None:
        steady = zygote.born and self.loop.boot - zygote.born >= STEADY
        zygote.deaths = 1 if steady else zygote.deaths + 1
        zygote.state = "gone"
        zygote.retry_at = self.loop.boot + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (zygote.deaths - 1))

    def _exited(self, zygote: Zygote, proc) -> None:
        """Its pidfd is readable: reap it; if it was in use, it died."""
        self.loop.remove_reader(proc.pidfd)     # while it is open: reap closes it
        status = supervisor.reap(proc)
        if status is None:          # not yet: watch on
            self.loop.add_reader(proc.pidfd, self._exited, zygote, proc)
            return
        self.ending.discard(proc)
        _drop_cgroups(proc.pid)
        if zygote.proc is proc:
            zygote.proc = None
            code, sig = status
            self._lost(zygote, f"exited ({f'killed by signal {sig}' if sig else f'status {code}'})")

    def _stop(self, zygote: Zygote) -> None:
        """Hang up on it and on its spares (each exits when its socket closes); its exit
        is still reaped."""
        while zygote.spares:
            spare = zygote.spares.popleft()
            if isinstance(spare, Spare):
                spare.sock.close()
        if zygote.sock is not None:
            if zygote.state == "starting":
                self.loop.remove_reader(zygote.sock.fileno())
            zygote.sock.close()
        if zygote.proc is not None:
            self.ending.add(zygote.proc)
        zygote.sock, zygote.proc = None, None

    # ================================================================ for the process layer
    def pids(self) -> set:
        """The zygotes' pids: children of the daemon that are no job's (and not orphans)."""
        return {z.proc.pid for z in self.zygotes.values() if z.proc is not None} | {p.pid for p in self.ending}

    def close(self, grace: float = 1.0) -> None:
        """Stop every zygote and reap it (SIGKILL after `grace` seconds)."""
        for zygote in self.zygotes.values():
            self._stop(zygote)
        for proc in list(self.ending):
            self.loop.remove_reader(proc.pidfd)
            if not select.select([proc.pidfd], [], [], grace)[0]:
                supervisor.signal_group(proc, signal.SIGKILL)
                select.select([proc.pidfd], [], [], grace)
            supervisor.reap(proc)
            supervisor.close(proc)
            _drop_cgroups(proc.pid)
        self.ending.clear()


def _drop_cgroups(pid: int) -> None:
    """The cgroups zygote `pid` made for runs that never came ("_py.PID.N", each emptied
    when its process saw the zygote go): removed now, or by cgroup.sweep once empty."""
    tree = supervisor.cgroup.TREE
    if tree is None:
        return
    try:
        names = os.listdir(tree.scope)
    except OSError:
        return
    for name in names:
        if name.startswith(f"_py.{pid}."):
            supervisor.cgroup.remove(os.path.join(tree.scope, name))


def _set_up(report: int, pid: int) -> int:
    """pid, once the run's process has closed the report (set up); forkexec.Failed with
    the step it wrote instead ("F<step>:<errno>"), the process reaped (our child)."""
    said, deadline = b"", time.monotonic() + REPLY_TIMEOUT
    while True:
        if not select.select([report], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError("the run's process did not finish its set-up")
        chunk = os.read(report, 4096)
        if not chunk:
            break
        said += chunk
    if said.startswith(b"F"):
        os.waitpid(pid, 0)
        step, _, err = said[1:].decode().strip().partition(":")
        raise forkexec.Failed(step, int(err or 0))
    return pid


def _spawn_server(key: Key, env: dict, fd: int) -> int:
    """The zygote's process: its own process group, stdin and stdout on /dev/null, the
    daemon's stderr, the socket as descriptor 3."""
    from .supervisor.spawn import _SIGDEF

    scope = supervisor.cgroup.TREE.scope if supervisor.cgroup.TREE is not None else ""
    argv = [key.interpreter, SERVER, "3", json.dumps(list(key.preload)), scope, " " * ARG_ROOM]
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_DUP2, fd, 3)]
    return os.posix_spawn(key.interpreter, argv, env, file_actions=actions, setpgroup=0,
                          setsigdef=_SIGDEF, setsigmask=())

