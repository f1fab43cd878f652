"""The JSON API under /api/: the control protocol over HTTP, for the page and for scripts.

    GET  /api/OP?field=value    reads:   ping, status, job, history, events, wait
    POST /api/OP  {"field": …}  changes: start, stop, restart, enable, disable, trigger,
                                         run, apply, reexec, shutdown

Each is one control request; the reply is the protocol's own, `{"ok": true, "result": …}`
or `{"ok": false, "error": "…"}`, with HTTP 200, 400 (refused by the daemon or malformed),
404 (no such op), 503 (no daemon running) or 504 (the daemon did not answer in time).
GET /api/log?job=NAME&lines=N (a job's log, live) and GET /api/stream (every event and
job change, live) are Server-Sent Events; POST /api/login {"token"} sets the token cookie.
"""
from __future__ import annotations

import json
from urllib.parse import parse_qs

from ..control import Client, DaemonNotRunning
from ..errors import AiosError
from .security import Refused

READS = {"ping": (), "about": (), "status": ("job",), "job": ("job",), "history": ("job", "limit"),
         "events": ("job", "limit", "after_id"), "wait": ("trigger",)}
WRITES = ("start", "stop", "restart", "enable", "disable", "trigger", "run", "apply", "reexec",
          "shutdown")
INTEGERS = ("limit", "after_id", "trigger", "lines")
MAX_BODY = 1 << 20            # the control protocol's own line limit
CALL_TIMEOUT = 30.0
LOG_LINES, LOG_LINES_MAX = 200, 5000


def query_fields(query: str, allowed: tuple) -> dict:
    """GET parameters as op fields: each named in `allowed`, integers where the op wants one."""
    fields = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in allowed:
            accepted = ", ".join(allowed) or "no parameters"
            raise Refused(400, f"unknown parameter {key!r}; accepted: {accepted}")
        fields[key] = _integer(key, values[-1]) if key in INTEGERS else values[-1]
    return fields


def _integer(key: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Refused(400, f"parameter {key!r} must be an integer, not {text[:40]!r}") from None


def body_fields(body: bytes, content_type: str) -> dict:
    """A POST body: one JSON object of the op's fields."""
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Refused(415, "send the fields as a JSON object with Content-Type: application/json")
    try:
        fields = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not JSON; send one object such as {\"job\": \"backup\"}") from None
    if not isinstance(fields, dict) or "op" in fields:
        raise Refused(400, "the body must be a JSON object of the op's fields (the op is in the URL)")
    return fields


def perform(home, op: str, fields: dict, hub=None) -> tuple[int, dict]:
    """One control request; with a hub, the job it names is read again and passed on to
    the browsers (the watch stream reports state changes, not every field that moved)."""
    try:
        with Client(home, timeout=None if op == "wait" else CALL_TIMEOUT) as client:
            result = client.call(op, **fields)
            if hub is not None and isinstance(fields.get("job"), str):
                hub.refresh(client, fields["job"])
    except DaemonNotRunning as exc:
        return 503, {"ok": False, "error": str(exc)}
    except AiosError as exc:
        return 400, {"ok": False, "error": str(exc)}
    except OSError as exc:
        return 504, {"ok": False, "error": f"the daemon did not answer: {exc}"}
    return 200, {"ok": True, "result": result}


def log_request(home, query: str) -> tuple[str, int]:
    """(log file path, number of lines) for GET /api/log?job=NAME&lines=N."""
    fields = query_fields(query, ("job", "lines"))
    if not fields.get("job"):
        raise Refused(400, "parameter 'job' is required: /api/log?job=NAME")
    code, reply = perform(home, "job", {"job": fields["job"]})
    if code != 200:
        raise Refused(code, reply["error"])
    return reply["result"]["log"], max(0, min(fields.get("lines", LOG_LINES), LOG_LINES_MAX))
