"""Rows of the SQLite store as spec records, including rows that other programs wrote.

The original orchestrator's clients insert into `triggers` whatever they like: args that
are a JSON list, a bare word or nothing, kwargs that may not be an object, `created` as
SQLite's CURRENT_TIMESTAMP text. Here each form becomes a value, never an exception.
Imports only aios.spec.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from ..spec import Event, JobState, Outcome, Run, Status, Trigger, fields

__all__ = ["STATE_FIELDS", "RUN_FIELDS", "EVENT_FIELDS", "state_of", "run_of", "trigger_of",
           "event_of", "outcome_text", "parse_args", "parse_kwargs", "parse_created"]

STATE_FIELDS = fields(JobState)   # the columns of job_state after `device`, in this order
RUN_FIELDS = fields(Run)
EVENT_FIELDS = fields(Event)


def state_of(row: tuple) -> JobState:
    values = dict(zip(STATE_FIELDS, row))
    values["status"] = Status(values["status"])
    values["enabled"] = None if values["enabled"] is None else bool(values["enabled"])
    values["held"] = bool(values["held"])
    return JobState(**values)


def run_of(row: tuple) -> Run:
    values = dict(zip(RUN_FIELDS, row))
    values["outcome"] = Outcome(values["outcome"]) if values["outcome"] else None
    return Run(**values)


def trigger_of(row: tuple) -> Trigger:
    tid, job, args, kwargs, created, claimed, device, done, outcome, run_id = row
    return Trigger(job=job, id=tid, args=parse_args(args), kwargs=parse_kwargs(kwargs) or {},
                   created=parse_created(created), claimed=claimed, device=device,
                   done=bool(done), outcome=outcome, run_id=run_id)


def event_of(row: tuple) -> Event:
    values = dict(zip(EVENT_FIELDS, row))
    data = _stored_json(values["data"])
    values["data"] = data if isinstance(data, dict) else None
    return Event(**values)


def outcome_text(outcome: Outcome | None) -> str | None:
    return None if outcome is None else Outcome(outcome).value


def _stored_json(raw: object) -> object:
    """The value another writer stored: None for NULL, empty text or JSON null; the raw
    value itself for a bare number; _NOT_JSON for text that is not JSON."""
    if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
        return None
    try:
        return json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError:
        return _NOT_JSON


_NOT_JSON = object()


def parse_args(raw: object) -> tuple:
    """A JSON list; a JSON scalar is one argument; NULL or empty text is none; text that
    is not JSON is one argument, the raw text, never split."""
    value = _stored_json(raw)
    if value is _NOT_JSON:
        return (raw,)
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def parse_kwargs(raw: object) -> dict | None:
    """A JSON object, or {} for NULL or empty; None for anything else (rejected)."""
    value = _stored_json(raw)
    if value is None:
        return {}
    return value if isinstance(value, dict) else None


def parse_created(raw: object) -> float:
    """Epoch seconds from a number, numeric text, or SQLite's CURRENT_TIMESTAMP text
    ('YYYY-MM-DD HH:MM:SS', UTC); 0.0 when missing or unreadable."""
    if raw is None:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
