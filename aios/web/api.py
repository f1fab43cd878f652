"""The JSON API under /api/: the control protocol over HTTP, for the page and for scripts.

    GET  /api/OP?field=value    reads:   ping, about, status, job, history, events, wait,
                                         fleet
    POST /api/OP  {"field": …}  changes: start, stop, restart, reload, enable, disable,
                                         trigger, run, apply, reexec, shutdown, route

Each is one control request; the reply is the protocol's own, `{"ok": true, "result": …}`
or `{"ok": false, "error": "…"}`, with HTTP 200, 400 (refused by the daemon or malformed),
404 (no such op), 503 (no daemon running) or 504 (the daemon did not answer in time).
GET /api/log?job=NAME&lines=N (a job's log, live) and GET /api/stream (every event and
job change, live) are Server-Sent Events. `limit` is capped at LIMIT_MAX, at most
WAITS_MAX waits are open at a time, and the values of a job's `env` are masked. In a
fleet, GET /api/fleet lists the devices and leases, and POST /api/route with
{"device": ID, "request": {"op": "restart", "job": NAME}} carries an operation out on
another device's daemon (through the database; the reply is that daemon's answer).
"""
from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import parse_qs

from ..control import DaemonNotRunning
from ..errors import AiosError
from .client import CALL_TIMEOUT
from .security import Refused, mask_env

READS = {"ping": (), "about": (), "status": ("job",), "job": ("job",), "history": ("job", "limit"),
         "events": ("job", "limit", "after_id"), "wait": ("trigger",), "fleet": ()}
WRITES = ("start", "stop", "restart", "reload", "enable", "disable", "trigger", "run", "apply", "reexec",
          "shutdown", "route")
INTEGERS = ("limit", "after_id", "trigger", "lines")
LIMIT_MAX = 1000              # rows a history or events read returns at most
WAITS_MAX = 32                # /api/wait requests open at a time
LOG_LINES, LOG_LINES_MAX = 200, 5000


def query_fields(query: str, allowed: tuple) -> dict:
    """GET parameters as op fields: each named in `allowed`, integers where the op wants
    one, `limit` at most LIMIT_MAX."""
    fields = {}
    for key, values in parse_qs(query, keep_blank_values=True, max_num_fields=20).items():
        if key not in allowed:
            accepted = ", ".join(allowed) or "no parameters"
            raise Refused(400, f"unknown parameter {key[:40]!r}; accepted: {accepted}")
        fields[key] = _integer(key, values[-1]) if key in INTEGERS else values[-1]
    if "limit" in fields:
        fields["limit"] = max(1, min(fields["limit"], LIMIT_MAX))
    return fields


def _integer(key: str, text: str) -> int:
    if not (text.lstrip("-").isdigit() and len(text) <= 19):
        raise Refused(400, f"parameter {key!r} must be an integer, not {text[:40]!r}")
    return int(text)


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


async def perform(daemon, op: str, fields: dict, hub=None) -> tuple[int, dict]:
    """One control request; with a hub, the job it names is read again and passed on to
    the browsers (the watch stream reports state changes, not every field that moved).
    The values of a job's `env` never leave in a reply."""
    try:
        result = await daemon.call(op, timeout=None if op == "wait" else CALL_TIMEOUT, **fields)
    except DaemonNotRunning as exc:
        return 503, {"ok": False, "error": str(exc)}
    except AiosError as exc:
        return 400, {"ok": False, "error": str(exc)}
    except (OSError, ValueError, asyncio.TimeoutError) as exc:
        return 504, {"ok": False, "error": f"the daemon did not answer: {exc or 'timed out'}"}
    if op == "job" and isinstance(result, dict) and isinstance(result.get("spec"), dict):
        result = {**result, "spec": mask_env(result["spec"])}
    if hub is not None and isinstance(fields.get("job"), str):
        await hub.refresh(fields["job"])
    return 200, {"ok": True, "result": result}


async def log_request(daemon, query: str) -> tuple[str, int]:
    """(log file path, number of lines) for GET /api/log?job=NAME&lines=N."""
    fields = query_fields(query, ("job", "lines"))
    if not fields.get("job"):
        raise Refused(400, "parameter 'job' is required: /api/log?job=NAME")
    code, reply = await perform(daemon, "job", {"job": fields["job"]})
    if code != 200:
        raise Refused(code, reply["error"])
    log = os.path.join(daemon.home, "logs", os.path.basename(reply["result"]["log"]))   # the home as we reach it
    return log, max(0, min(fields.get("lines", LOG_LINES), LOG_LINES_MAX))
