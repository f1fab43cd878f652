"""The control protocol: JSON lines over the Unix socket AIOS_HOME/aios.sock.

A request is one JSON object per line, `{"op": "...", ...}` (an optional "id" is echoed
back); the reply is one line, `{"ok": true, "result": ...}` or `{"ok": false, "error":
"..."}`. `COMMANDS` is the protocol: each handler's docstring is its entry in
docs/protocol.md. The server lives inside the daemon's selector loop (no threads) and
admits only the daemon's owner and root (SO_PEERCRED); the client is small enough for
the CLI's start-up budget. Imports only aios.errors; the engine is passed in (duck-typed).
"""
from __future__ import annotations

import json
import os
import socket

from .errors import AiosError

SOCKET_NAME = "aios.sock"
MAX_LINE = 1 << 20          # bytes; a longer request is refused and its connection closed
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
    """status [job] -> [{name, type, status, why, pid, uptime, restarts, next_due, last_run,
    tags, ...}]: every job, or one."""
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


def op_trigger(engine, req):
    """trigger job [args] [kwargs] -> trigger id. Queue a run with JSON args (list) and
    kwargs (object); durable once acknowledged."""
    args, kwargs = _field(req, "args", list, []), _field(req, "kwargs", dict, {})
    if not all(isinstance(k, str) for k in kwargs):
        raise RequestError("op 'trigger': field 'kwargs' must have string keys")
    return engine.trigger(_job(req), args, kwargs)


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
    "restart": op_restart, "enable": op_enable, "disable": op_disable, "trigger": op_trigger,
    "run": op_run, "history": op_history, "events": op_events, "apply": op_apply,
    "reexec": op_reexec, "shutdown": op_shutdown, "triggers": op_triggers, "drop": op_drop,
}
DEFERRED = {"wait": op_wait}       # reply later, through a callback
STREAMING = {"watch": op_watch}    # reply, then keep sending lines


# ================================================================ the server

class ControlServer:
    """Accepts connections on the loop; one request per line; replies in order."""

    def __init__(self, engine, path: str, listen_fd: int | None = None):
        self.engine, self.path = engine, path
        self.owner = os.getuid()
        self.sock = _listen(path) if listen_fd is None else socket.socket(fileno=listen_fd)
        self.sock.setblocking(False)
        engine.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            uid = peer_uid(conn)
            if uid not in (self.owner, 0):
                _refuse(conn, f"permission denied: uid {uid} is not the daemon's owner ({self.owner}) or root")
                continue
            Connection(self, conn)

    def pause(self) -> None:
        """Stop accepting; connections queue in the listen backlog."""
        self.engine.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        self.pause()
        self.sock.close()


class Connection:
    def __init__(self, server: ControlServer, conn: socket.socket):
        self.server, self.conn, self.loop = server, conn, server.engine.loop
        self.inbox, self.outbox = bytearray(), bytearray()
        self.closed = self.closing = False
        self.watching = None
        self.loop.add_reader(conn.fileno(), self._readable)
        self._readable()   # a client usually sends its request with the connect: answer in this turn

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
        while not self.closing:
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
                self._handle(line)

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
                return DEFERRED[op](self.server.engine, req, lambda result: self.send({"ok": True, "result": result, **tag}))
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

    def send_event(self, event) -> None:
        self.send({"event": {"id": event.id, "ts": event.ts, "name": event.name, "job": event.job,
                             "message": event.message, "data": event.data}})

    def send(self, message: dict) -> None:
        if self.closed:
            return
        self.outbox += json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        self._flush()

    def _flush(self) -> None:
        try:
            sent = self.conn.send(self.outbox) if self.outbox else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return self.close()
        del self.outbox[:sent]
        if self.outbox:
            self.loop.add_writer(self.conn.fileno(), self._flush)
        else:
            self.loop.remove_writer(self.conn.fileno())
            if self.closing:
                self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.watching in self.server.engine.watchers:
            self.server.engine.watchers.remove(self.watching)
        self.loop.remove_reader(self.conn.fileno())
        self.loop.remove_writer(self.conn.fileno())
        self.conn.close()


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


def _listen(path: str) -> socket.socket:
    """Bind the socket with mode 0600 (set through the umask, so it is never wider)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)  # a stale socket of a dead daemon; the pid lock proves none runs
    except FileNotFoundError:
        pass
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _refuse(conn: socket.socket, why: str) -> None:
    try:
        conn.send(json.dumps({"ok": False, "error": why}).encode() + b"\n")
    except OSError:
        pass
    conn.close()


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
