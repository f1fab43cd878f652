"""The control protocol: JSON lines over the Unix socket AIOS_HOME/aios.sock.

A request is one JSON object per line, `{"op": "...", ...}` (an optional "id" is echoed
back); the reply is one line, `{"ok": true, "result": ...}` or `{"ok": false, "error":
"..."}`. `COMMANDS` is the protocol: each handler's docstring is its entry in
docs/protocol.md. The server lives inside the daemon's selector loop (no threads),
admits only the daemon's owner, root and the users of `control` jobs (SO_PEERCRED),
and bounds what clients can make it hold (ControlServer); the client is small enough
for the CLI's start-up budget. `raise_nofile_limit` is for the daemon's first moments.
Imports only aios.errors and aios.unixsock; the engine is passed in (duck-typed).
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys

from .errors import AiosError
from .unixsock import listen_private, peer_uid

SOCKET_NAME = "aios.sock"
MAX_LINE = 1 << 20          # bytes; a longer request is refused and its connection closed
BACKLOG = 512               # connections waiting to be accepted
_CHUNK = 1 << 16


class DaemonNotRunning(AiosError):
    """No AIOS daemon is running for this home."""


class RequestError(AiosError):
    """The request is malformed; the message says which field and what is accepted."""


# ================================================================ the commands

def _job(req: dict) -> str:
    return _field(req, "job", str)


def _field(req: dict, key: str, kind: type, default=...):
    value = req.get(key, default)
    if value is ...:
        raise RequestError(f"op {req['op']!r}: missing field {key!r}")
    if value is not default and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        name = {str: "a string", int: "an integer", list: "a list", dict: "an object", bool: "true or false"}[kind]
        raise RequestError(f"op {req['op']!r}: field {key!r} must be {name}")
    if kind is int and value is not default and not -_INT64 <= value < _INT64:
        raise RequestError(f"op {req['op']!r}: field {key!r} is out of range (at most {_INT64 - 1})")
    return value


_INT64 = 1 << 63            # integers the store can hold


def op_ping(engine, req):
    """ping -> {"pid", "version", "home", "device", "started", "jobs"}. A cheap liveness check."""
    return engine.ping()


def op_about(engine, req):
    """about -> ping's fields and "python", "tags", "rss_kib", "cpu_seconds": the daemon itself."""
    return engine.about()


def op_status(engine, req):
    """status [job] [fleet] -> [{name, type, status, why, pid, uptime, restarts, next_due,
    last_run, tags, ...}]: every job, or one (a failed or backoff job's last stderr lines
    as log_tail); with fleet: true, every job of every device of the fleet as each last
    stored it ({device, name, status, why, pid, ...})."""
    if _field(req, "fleet", bool, False):
        return engine.fleet_status()
    return engine.status(_field(req, "job", str, None))


def op_job(engine, req):
    """job job -> {"status": {...as in status}, "spec": {its aios.toml table}, "log": path}."""
    return engine.job_detail(_job(req))


def op_start(engine, req):
    """start job -> null. Start a stopped or failed job (clears a crash-loop verdict)."""
    return engine.start(_job(req))


def op_stop(engine, req):
    """stop job -> null. Stop the job's processes (stop_signal, then SIGKILL after
    stop_timeout); it stays stopped until started."""
    return engine.stop(_job(req))


def op_restart(engine, req):
    """restart job -> null. Stop the job's processes and start it again."""
    return engine.restart(_job(req))


def op_enable(engine, req):
    """enable job -> null. Persistently enable the job and start it as its type says."""
    return engine.enable(_job(req))


def op_disable(engine, req):
    """disable job -> null. Persistently disable the job, stopping its processes."""
    return engine.disable(_job(req))


def op_trigger(engine, req, reply):
    """trigger job [args] [kwargs] [device] -> trigger id. Queue a run with JSON args (list)
    and kwargs (object), for one device of a fleet if `device` is given; the reply comes
    once the trigger is on disk (it survives power loss)."""
    args, kwargs = _field(req, "args", list, []), _field(req, "kwargs", dict, {})
    if not all(isinstance(k, str) for k in kwargs):
        raise RequestError("op 'trigger': field 'kwargs' must have string keys")
    engine.trigger(_job(req), args, kwargs, reply=reply, target=_field(req, "device", str, None))


def op_signal(engine, req):
    """signal job signal -> [pid, ...]. Send the signal (a name: "HUP", "USR1", ...) to every
    process group of the job."""
    return engine.signal(_job(req), _field(req, "signal", str))


def op_fleet(engine, req):
    """fleet -> {"device", "version", "devices": [...], "leases": [...]}: this device, the
    version of the fleet's jobs it runs, every device (tags, version, load, last heartbeat,
    running jobs) and who holds each fleet job's lease (fleet mode only)."""
    return engine.fleet_view()


def op_route(engine, req, reply):
    """route device request -> "ok". Carry out `request`, an object such as {"op": "restart",
    "job": "web"} (start, stop, restart, enable, disable, run, signal), on the daemon of
    another device of the fleet, through the database; the reply is that daemon's answer."""
    engine.route(_field(req, "device", str), _field(req, "request", dict), reply)


def op_reload(engine, req):
    """reload job -> [pid, ...]. Send the job's reload_signal (e.g. HUP) to every process
    group of the job; an error naming restart if it has none."""
    return engine.reload(_job(req))


def op_run(engine, req):
    """run job -> null. Run a scheduled or idle job once now (never beside its own run)."""
    return engine.run_now(_job(req))


def op_history(engine, req):
    """history [job] [limit=50] -> [run, ...] newest first: start, end, exit, outcome,
    attempt, trigger."""
    limit = _field(req, "limit", int, 50)
    return engine.history(_field(req, "job", str, None), max(1, min(limit, 10_000)))


def op_events(engine, req):
    """events [job] [limit=100] [after_id] -> [event, ...] newest first."""
    limit = _field(req, "limit", int, 100)
    return engine.events(_field(req, "job", str, None), max(1, min(limit, 10_000)),
                         _field(req, "after_id", int, None))


def op_apply(engine, req):
    """apply [text] [check] -> {"added", "removed", "changed", "unchanged", "fields", "kept",
    "errors"}. Reload aios.toml (or, with text, replace it by that TOML text, refused whole
    if it has any error; the old file is kept as aios.toml.prev) without stopping the
    daemon. "fields": the changed fields of each changed job; "kept": jobs whose new table
    is invalid, which keep running on their previous one. With check true, change
    nothing and also return "skipped" (new jobs with an invalid table)."""
    return engine.apply(_field(req, "text", str, None), _field(req, "check", bool, False))


def op_dashboard_token(engine, req):
    """dashboard_token -> the dashboard's token. For a dashboard that runs as a user of
    its own (`control = true`) and may not read dashboard.token; any client the socket
    admits could read that file anyway."""
    return engine.dashboard_token()


def op_reexec(engine, req):
    """reexec -> {"pid"}. Replace the daemon's code in place (same pid); jobs keep running."""
    return engine.request_reexec()


def op_shutdown(engine, req):
    """shutdown -> {"pid"}. Stop every job gracefully, then exit. The reply comes at once;
    the daemon's pid is gone when all its jobs have exited."""
    engine.shutdown("requested over the control socket")
    return {"pid": os.getpid()}


def op_triggers(engine, req):
    """triggers [job] [limit=100] -> [trigger, ...] oldest first: the queued triggers, each
    with "why" it waits (its job busy, invalid or missing from aios.toml)."""
    limit = _field(req, "limit", int, 100)
    return engine.triggers(_field(req, "job", str, None), max(1, min(limit, 10_000)))


def op_drop(engine, req):
    """drop job [trigger] -> number dropped. Mark the job's queued triggers (or the one)
    done as "dropped": the only way acknowledged work leaves the queue without running."""
    return engine.drop_triggers(_job(req), _field(req, "trigger", int, None))


def op_wait(engine, req, reply):
    """wait trigger -> {"trigger", "outcome", "exit_code", "signal", "run_id"}. Replies when
    the trigger is done (after its last attempt)."""
    engine.wait_trigger(_field(req, "trigger", int), reply)


def op_watch(engine, req, send):
    """watch -> "watching", then one line {"event": {id, ts, name, job, message, data}} per
    event, each sent once it is stored (state changes included; `data` is the status of
    its job right after it) until the client disconnects."""
    return engine.watchers.append(send) or "watching"


COMMANDS = {
    "ping": op_ping, "about": op_about, "status": op_status, "job": op_job, "start": op_start, "stop": op_stop,
    "restart": op_restart, "enable": op_enable, "disable": op_disable,
    "run": op_run, "history": op_history, "events": op_events, "apply": op_apply,
    "reexec": op_reexec, "shutdown": op_shutdown, "dashboard_token": op_dashboard_token, "triggers": op_triggers,
    "drop": op_drop, "signal": op_signal, "fleet": op_fleet, "reload": op_reload,
}
# reply later: reply(result), or reply(AiosError)
DEFERRED = {"wait": op_wait, "trigger": op_trigger, "route": op_route}
STREAMING = {"watch": op_watch}    # reply, then keep sending lines


# ================================================================ the server

CONNECTIONS_MAX = 1024      # connections at a time; never more than half the descriptors free at start
FIRST_REQUEST = 10.0        # seconds a new connection has to send its first complete request
OUTBOX_PAUSE = 256 * 1024   # a connection's requests wait while this much of its replies is unsent
WATCH_BEHIND = 1 << 20      # a watcher this many bytes of events behind is disconnected
STALLED = 60.0              # a client that reads none of its replies for this long is disconnected
WAITS_PER_CONNECTION = 256  # `wait` requests pending on one connection
ACCEPT_PAUSE = 1.0          # out of descriptors: seconds between attempts to accept


class ControlServer:
    """Accepts connections on the loop; one request per line; replies in order.

    Everything a client can make it hold is bounded: at most `limit` connections, at most
    3/4 of them for one uid (the owner and root each keep room), the longest idle one closed when
    a new one needs room; FIRST_REQUEST to send a first request; unsent replies up to
    OUTBOX_PAUSE (then the connection's further requests wait), unread events up to
    WATCH_BEHIND, and STALLED without reading any, before it is closed (with a line
    saying why, if its socket has room). Out of descriptors, it stops accepting for
    ACCEPT_PAUSE at a time and says so once, through `report(line)`."""

    def __init__(self, engine, path: str, listen_fd: int | None = None, report=None, admits=None):
        self.engine, self.path, self.loop = engine, path, engine.loop
        self.owner = os.getuid()
        self.admits = admits or (lambda uid: False)   # uids beside the owner and root: `control` jobs
        self.report = report or _report
        self.sock = (listen_private(path, backlog=BACKLOG, shared=True) if listen_fd is None
                     else socket.socket(fileno=listen_fd))
        self.sock.setblocking(False)
        self.limit = connection_limit()
        self.connections: dict[Connection, None] = {}   # least recently active first
        self.per_uid: dict[int, int] = {}
        self.starved = False        # out of descriptors, and said so
        self.paused = False
        self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    return self._starve(exc)
                continue    # that client gave up before it was accepted
            if self.starved:
                self.starved = False
                self.report("control socket: descriptors free again; accepting connections")
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        uid = peer_uid(conn)
        if uid not in (self.owner, 0) and not self.admits(uid):
            return _refuse(conn, f"permission denied: uid {uid} is not the daemon's owner ({self.owner}) or root")
        if not self._make_room(uid):
            return _refuse(conn, f"too many connections ({len(self.connections)}), none of them idle; "
                                 "try again when a watch or wait is over")
        self.per_uid[uid] = self.per_uid.get(uid, 0) + 1
        self.connections[Connection(self, conn, uid)] = None

    def _make_room(self, uid: int) -> bool:
        """Close the longest idle connection (of this uid, when it has its share) if there
        is no room; False if there is none to close."""
        share = self.limit if self.owner == 0 else self.limit - self.limit // 4   # room for the other uid
        mine = self.per_uid.get(uid, 0) >= share
        if not mine and len(self.connections) < self.limit:
            return True
        for other in self.connections:
            if other.idle() and (other.uid == uid or not mine):
                other.goodbye(f"closed: the daemon has {len(self.connections)} connections and this one "
                              "was the longest idle")
                return True
        return False

    def active(self, conn: Connection) -> None:
        """conn did something: it is the most recently active now."""
        if self.connections.pop(conn, False) is None:
            self.connections[conn] = None

    def forget(self, conn: Connection) -> None:
        if self.connections.pop(conn, False) is None:
            self.per_uid[conn.uid] -= 1

    def _starve(self, exc: OSError) -> None:
        """Out of descriptors: the pending connections wait in the backlog, the loop does
        not spin on a readable socket it cannot accept from."""
        self.loop.remove_reader(self.sock.fileno())
        self.loop.call_later(ACCEPT_PAUSE, self._resume)
        if not self.starved:
            self.starved = True
            self.report(f"control socket: cannot accept ({os.strerror(exc.errno)}); trying again every "
                        f"{ACCEPT_PAUSE:g} s, jobs keep running")

    def _resume(self) -> None:
        if not self.paused:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def pause(self) -> None:
        """Stop accepting; connections queue in the listen backlog."""
        self.paused = True
        self.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        self.pause()
        self.sock.close()


class Connection:
    def __init__(self, server: ControlServer, conn: socket.socket, uid: int):
        self.server, self.conn, self.loop, self.uid = server, conn, server.loop, uid
        self.inbox, self.outbox = bytearray(), bytearray()
        self.closed = self.closing = self.reading_paused = self.mid_line = False
        self.watching = None
        self.waits: list = []       # (trigger id, reply callback) of its pending waits
        self.stall_timer = None
        self.first_timer = self.loop.call_later(FIRST_REQUEST, self.goodbye,
                                                f"closed: no request within {FIRST_REQUEST:g} s of connecting")
        self.loop.add_reader(conn.fileno(), self._readable)
        self._readable()   # a client usually sends its request with the connect: answer in this turn

    def idle(self) -> bool:
        """Nothing would be lost by closing it: no watch, no wait, no reply owed."""
        return not (self.watching or self.waits or self.outbox or self.closing or b"\n" in self.inbox)

    def _readable(self) -> None:
        try:
            data = self.conn.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return self.close()
        self.inbox += data
        self._handle_lines()

    def _handle_lines(self) -> None:
        while not self.closing and not self.closed:
            if len(self.outbox) >= OUTBOX_PAUSE:    # answer more once the client reads these
                return self._pause_reading()
            end = self.inbox.find(b"\n")
            if end < 0:
                if len(self.inbox) > MAX_LINE:
                    self._refuse_oversized()
                return
            line = bytes(self.inbox[:end])
            del self.inbox[:end + 1]
            if len(line) > MAX_LINE:
                return self._refuse_oversized()
            if line.strip():
                self._received()
                self._handle(line)

    def _received(self) -> None:
        if self.first_timer is not None:
            self.first_timer.cancel()
            self.first_timer = None
        self.server.active(self)

    def _pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.loop.remove_reader(self.conn.fileno())

    def _refuse_oversized(self) -> None:
        self.inbox.clear()
        self.send({"ok": False, "error": f"request too large: over {MAX_LINE} bytes in one line"})
        self.closing = True
        self._flush()

    def _handle(self, line: bytes) -> None:
        try:
            req = _decode(line)
        except RequestError as exc:
            return self.send({"ok": False, "error": str(exc)})
        tag = {"id": req["id"]} if "id" in req else {}
        op = req["op"]
        try:
            if op in DEFERRED:
                return self._defer(op, req, tag)
            if op in STREAMING:
                self.watching = self.send_event
                return self.send({"ok": True, "result": STREAMING[op](self.server.engine, req, self.send_event), **tag})
            self.send({"ok": True, "result": COMMANDS[op](self.server.engine, req), **tag})
        except AiosError as exc:
            self.send({"ok": False, "error": str(exc), **tag})
        except Exception as exc:   # a bug: answer all the same (no client may hang), then report it
            self.send({"ok": False, "error": f"internal error in op {op!r} ({type(exc).__name__}: "
                       f"{str(exc)[:200]}); the daemon keeps running", **tag})
            raise

    def _defer(self, op: str, req: dict, tag: dict) -> None:
        """A reply that comes later (a trigger once it is on disk, a wait once its trigger is
        done); a wait's callback is kept, to withdraw it from the engine if the client
        leaves first."""
        if op != "wait":
            return DEFERRED[op](self.server.engine, req, lambda result: self.send(_answer(result, tag)))
        if len(self.waits) >= WAITS_PER_CONNECTION:
            raise RequestError(f"op {op!r}: {WAITS_PER_CONNECTION} waits are pending on this connection "
                               "already; wait on another")

        def reply(result) -> None:
            if entry in self.waits:
                self.waits.remove(entry)
            self.send(_answer(result, tag))

        entry = (req.get("trigger"), reply)
        self.waits.append(entry)
        try:
            DEFERRED[op](self.server.engine, req, reply)
        except BaseException:
            if entry in self.waits:
                self.waits.remove(entry)
            raise

    def send_event(self, event) -> None:
        self.send({"event": {"id": event.id, "ts": event.ts, "name": event.name, "job": event.job,
                             "message": event.message, "data": event.data}})
        if len(self.outbox) > WATCH_BEHIND:
            self.goodbye(f"closed: this watcher fell {len(self.outbox)} bytes of events behind; "
                         "read events as they come, and watch again")

    def send(self, message: dict) -> None:
        if self.closed or self.closing:
            return
        self.outbox += json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        self._flush()

    def goodbye(self, why: str) -> None:
        """Close now, telling the client why if its socket has room for one more line;
        what it had not read yet is dropped."""
        if self.closed:
            return
        rest_of_line = self.outbox[:self.outbox.find(b"\n") + 1] if self.mid_line else b""
        try:
            self.conn.send(bytes(rest_of_line) + json.dumps({"ok": False, "error": why}).encode() + b"\n")
        except OSError:
            pass
        self.close()

    def _flush(self) -> None:
        try:
            sent = self.conn.send(self.outbox) if self.outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return self.close()
        if sent:
            self.mid_line = self.outbox[sent - 1] != 10     # stopped inside a line
            del self.outbox[:sent]
        if self.outbox:
            self.loop.add_writer(self.conn.fileno(), self._flush)
            if sent or self.stall_timer is None:    # it reads: STALLED more from now
                self._stall_timer(self.loop.call_later(STALLED, self.goodbye,
                                                       f"closed: replies unread for {STALLED:g} s"))
            return
        self.loop.remove_writer(self.conn.fileno())
        self._stall_timer(None)
        if self.closing:
            return self.close()
        if self.reading_paused:
            self.reading_paused = False
            self.loop.add_reader(self.conn.fileno(), self._readable)
            self._handle_lines()

    def _stall_timer(self, timer) -> None:
        if self.stall_timer is not None:
            self.stall_timer.cancel()
        self.stall_timer = timer

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for timer in (self.first_timer, self.stall_timer):
            if timer is not None:
                timer.cancel()
        self._withdraw()
        self.loop.remove_reader(self.conn.fileno())
        self.loop.remove_writer(self.conn.fileno())
        self.conn.close()
        self.server.forget(self)

    def _withdraw(self) -> None:
        """A client gone watches and waits no more: its callbacks leave the engine."""
        engine = self.server.engine
        if self.watching in engine.watchers:
            engine.watchers.remove(self.watching)
        for trigger, reply in self.waits:
            waiting = engine.waiters.get(trigger, [])
            if reply in waiting:
                waiting.remove(reply)
            if not waiting:
                engine.waiters.pop(trigger, None)
        self.waits.clear()


def connection_limit() -> int:
    """CONNECTIONS_MAX, or half the descriptors this process has free if that is less
    (the other half stays for jobs, logs and the store), and at least 8."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return CONNECTIONS_MAX
    if soft == getattr(resource, "RLIM_INFINITY", -1):
        return CONNECTIONS_MAX
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 32
    return max(8, min(CONNECTIONS_MAX, (soft - used) // 2))


def _report(line: str) -> None:
    """Where the server says what it did about a limit, unless the daemon gives a place."""
    import time

    try:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _answer(result, tag: dict) -> dict:
    """The reply line of a deferred op: its result, or the error it was given."""
    if isinstance(result, AiosError):
        return {"ok": False, "error": str(result), **tag}
    return {"ok": True, "result": result, **tag}


def _decode(line: bytes) -> dict:
    try:
        req = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"malformed request: not JSON ({exc}); send one JSON object per line") from None
    if not isinstance(req, dict):
        raise RequestError("malformed request: expected a JSON object like {\"op\": \"status\"}")
    op = req.get("op")
    if not isinstance(op, str):
        raise RequestError("malformed request: missing \"op\" (a string such as \"status\")")
    if op not in COMMANDS and op not in DEFERRED and op not in STREAMING:
        known = ", ".join(sorted({*COMMANDS, *DEFERRED, *STREAMING}))
        raise RequestError(f"unknown op {op[:40]!r}; known ops: {known}")
    return req


def _refuse(conn: socket.socket, why: str) -> None:
    try:
        conn.send(json.dumps({"ok": False, "error": why}).encode() + b"\n")
    except OSError:
        pass
    conn.close()


def raise_nofile_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (the daemon calls it first
    thing: connections, pidfds and log files all need descriptors, and the soft limit is
    often 1024). Returns (old soft limit, new soft limit); where there are no rlimits, or
    the kernel refuses, the limit stays as it was."""
    try:
        import resource
    except ImportError:
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft >= hard:
        return soft, soft
    target = hard if hard != resource.RLIM_INFINITY else max(soft, _NOFILE_WITHOUT_HARD)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


_NOFILE_WITHOUT_HARD = 1 << 20      # the soft limit when the hard one is unlimited


# ================================================================ the client

class Client:
    """A connection to a daemon; `call` sends one request and returns its result."""

    def __init__(self, home, timeout: float | None = 30.0):
        self.path = os.path.join(str(home), SOCKET_NAME)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise DaemonNotRunning(f"no AIOS daemon is running for {home} (start one with: aios up -d)") from None
        self.buffer = b""

    def call(self, op: str, **fields):
        """Send {"op": op, **fields}; return the result or raise AiosError with the error."""
        self.send(op, **fields)
        reply = self.receive()
        if not reply.get("ok"):
            raise AiosError(reply.get("error", "the daemon gave no reason"))
        return reply.get("result")

    def send(self, op: str, **fields) -> None:
        self.sock.sendall(json.dumps({"op": op, **fields}, separators=(",", ":")).encode() + b"\n")

    def receive(self) -> dict:
        """The next line from the daemon, decoded; DaemonNotRunning if it hung up."""
        while b"\n" not in self.buffer:
            try:
                data = self.sock.recv(_CHUNK)
            except ConnectionResetError:
                data = b""
            if not data:
                raise DaemonNotRunning("the daemon closed the connection (it is stopping, stopped or re-executing)")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def call(home, op: str, **fields):
    """One request on a fresh connection."""
    with Client(home) as client:
        return client.call(op, **fields)
