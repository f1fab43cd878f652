"""`reconcile.changes`: what `aios apply --check` says applying a configuration would do,
as a pure function of the running tables and the loaded configuration."""
from __future__ import annotations

from pathlib import Path

from aios.config import Config
from aios.engine.reconcile import changes
from aios.jobtable import parse_job
from aios.spec import Settings


def config(tables: dict, invalid: dict | None = None) -> Config:
    return Config(home=Path("/h"), settings=Settings(device_id="d"), tables=tables,
                  specs={name: parse_job(name, table) for name, table in tables.items()},
                  errors=list((invalid or {}).values()), invalid=invalid or {})


SLEEP = {"type": "always", "command": ["sleep", "9"]}
TICK = {"type": "interval", "every": "30s", "command": ["true"]}


def test_added_removed_changed_with_their_fields_and_unchanged():
    running = {"keep": SLEEP, "edit": TICK, "gone": SLEEP}
    new = config({"keep": SLEEP, "edit": {**TICK, "every": "1m", "env": {"A": "1"}}, "new": TICK})
    assert changes(running, new) == {
        "added": ["new"], "removed": ["gone"], "changed": ["edit"], "unchanged": ["keep"],
        "fields": {"edit": ["env", "every"]}, "kept": {}, "skipped": {}}


def test_a_field_dropped_counts_as_changed():
    assert changes({"a": {**TICK, "timeout": 5}}, config({"a": TICK}))["fields"] == {"a": ["timeout"]}


def test_a_running_job_whose_new_table_is_invalid_is_kept_not_removed():
    why = "job 'svc': unknown field 'comand' (did you mean 'command'?)"
    result = changes({"svc": SLEEP}, config({}, {"svc": why}))
    assert result["kept"] == {"svc": why} and result["removed"] == [] and result["unchanged"] == []


def test_a_new_job_with_an_invalid_table_is_skipped():
    why = "job 'late': time: '25:00' is not a time of day"
    result = changes({}, config({"ok": TICK}, {"late": why}))
    assert result["added"] == ["ok"] and result["skipped"] == {"late": why} and result["kept"] == {}


def test_nothing_running_means_everything_is_added():
    assert changes({}, config({"a": TICK, "b": SLEEP}))["added"] == ["a", "b"]


def test_the_copies_of_a_job_whose_new_table_is_invalid_are_kept_and_a_new_count_only_adds_or_removes():
    why = "job 'web': instances = 0 must be an integer from 1 to 256"
    result = changes({"web.0": SLEEP, "web.1": SLEEP}, config({}, {"web": why}))
    assert result["kept"] == {"web.0": why, "web.1": why} and result["removed"] == []
    result = changes({"web.0": SLEEP, "web.1": SLEEP}, config({"web.0": SLEEP}))
    assert result["removed"] == ["web.1"] and result["unchanged"] == ["web.0"] and result["changed"] == []
