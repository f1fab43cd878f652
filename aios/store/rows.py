"""Rows into records, the same way in every backend, and the SQL filters they share.

Other programs insert into `triggers` directly (the original control path), so args,
kwargs and created may hold anything: these functions turn such values into what a
Trigger holds, or say that the row must be rejected. Pure; imports only aios.spec.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

from ..spec import Outcome, Run, Trigger

__all__ = ["parse_args", "parse_kwargs", "parse_created", "outcome_text",
           "trigger", "run", "filtered", "stored_json"]

_NOT_JSON = object()


def outcome_text(outcome: Outcome | None) -> str | None:
    return None if outcome is None else Outcome(outcome).value


def stored_json(raw: object) -> object:
    """The value another writer stored: None for NULL, empty text or JSON null; the raw
    value itself for a bare number; _NOT_JSON for text that is not JSON."""
    if raw is None or (isinstance(raw, (str, bytes)) and not raw.strip()):
        return None
    try:
        return json.loads(raw) if isinstance(raw, (str, bytes)) else raw
    except ValueError:
        return _NOT_JSON


def parse_args(raw: object) -> tuple:
    """A JSON list; a JSON scalar is one argument; NULL or empty text is none; text that
    is not JSON is one argument, the raw text, never split (bytes that are not UTF-8, a
    BLOB, as the file system would decode them: exec gets those very bytes)."""
    value = stored_json(raw)
    if value is _NOT_JSON:
        return (raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw,)
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def parse_kwargs(raw: object) -> dict | None:
    """A JSON object, or {} for NULL or empty; None for anything else (the engine rejects
    the trigger: "kwargs is not a JSON object")."""
    value = stored_json(raw)
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


def trigger(tid: int, job: str, args: object, kwargs: object, created: object, **state) -> Trigger:
    """A Trigger from a stored row (its kwargs already accepted; state: claimed, done, ...)."""
    return Trigger(job=job, id=tid, args=parse_args(args), kwargs=parse_kwargs(kwargs) or {},
                   created=parse_created(created), **state)


def run(values: dict) -> Run:
    return Run(**{**values, "outcome": Outcome(values["outcome"]) if values["outcome"] else None})


def filtered(select: str, order: str, limit: int, filters: tuple, mark: str = "?") -> tuple[str, tuple]:
    """`select` with the conditions ("job = ?", value) whose value is not None, ordered and
    limited; `mark` is the driver's placeholder."""
    used = [(condition, value) for condition, value in filters if value is not None]
    joiner = " AND " if " WHERE " in select else " WHERE "
    where = joiner + " AND ".join(c.replace("?", mark) for c, _ in used) if used else ""
    return f"{select}{where} {order} LIMIT {mark}", (*(v for _, v in used), limit)
