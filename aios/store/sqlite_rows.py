"""Rows of the SQLite store as spec records, including rows that other programs wrote.

The columns of each SQLite table in order, and a row of each as its record; what other
programs may have written into `triggers` is parsed by rows.py, as in every backend.
Imports only aios.spec and the store's rows.
"""
from __future__ import annotations

from ..spec import Event, JobState, Run, Status, Trigger, fields
from .rows import parse_args, parse_created, parse_kwargs, run, stored_json

__all__ = ["STATE_FIELDS", "RUN_FIELDS", "EVENT_FIELDS", "state_of", "run_of", "trigger_of", "event_of"]

STATE_FIELDS = fields(JobState)   # the columns of job_state after `device`, in this order
RUN_FIELDS = tuple(name for name in fields(Run) if name != "epoch")   # a lease's epoch: fleets only
EVENT_FIELDS = fields(Event)


def state_of(row: tuple) -> JobState:
    values = dict(zip(STATE_FIELDS, row))
    values["status"] = Status(values["status"])
    values["enabled"] = None if values["enabled"] is None else bool(values["enabled"])
    values["held"] = bool(values["held"])
    return JobState(**values)


def run_of(row: tuple) -> Run:
    return run(dict(zip(RUN_FIELDS, row)))


def trigger_of(row: tuple) -> Trigger:
    tid, job, args, kwargs, created, claimed, device, done, outcome, run_id, target = row
    return Trigger(job=job, id=tid, args=parse_args(args), kwargs=parse_kwargs(kwargs) or {},
                   created=parse_created(created), claimed=claimed, device=device,
                   done=bool(done), outcome=outcome, run_id=run_id, target=target)


def event_of(row: tuple) -> Event:
    values = dict(zip(EVENT_FIELDS, row))
    data = stored_json(values["data"])
    values["data"] = data if isinstance(data, dict) else None
    return Event(**values)
