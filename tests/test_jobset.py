"""aios.jobset: hooks and `after` checked across jobs (dangling names, always targets,
cycles), and the rule of `after` as a table."""
from __future__ import annotations

import pytest

from aios import jobset
from aios.spec import Outcome, Run, parse_job

TRIGGER = {"type": "trigger", "command": ["true"]}
ALWAYS = {"type": "always", "command": ["sleep", "9"]}


def checked(tables: dict, broken: dict | None = None) -> tuple[dict, list, dict]:
    """(valid specs, errors, invalid) of tables run through jobset.check; `broken` are
    tables that failed to parse (defined, but invalid)."""
    specs = {name: parse_job(name, table) for name, table in tables.items()}
    errors, invalid = [], {}
    jobset.check(specs, dict(tables), {**tables, **(broken or {})}, errors, invalid)
    return specs, errors, invalid


def test_links_to_trigger_jobs_are_kept():
    specs, errors, invalid = checked({"backup": {**TRIGGER, "on_failure": "notify", "on_success": "notify"},
                                      "notify": TRIGGER, "report": {**TRIGGER, "after": ["backup"]}})
    assert list(specs) == ["backup", "notify", "report"] and errors == [] and invalid == {}


def test_a_hook_may_name_a_job_whose_own_table_is_invalid():
    specs, errors, _ = checked({"backup": {**TRIGGER, "on_failure": "notify"}}, broken={"notify": {"type": "?"}})
    assert "backup" in specs and errors == []


@pytest.mark.parametrize("table, message", [
    ({**TRIGGER, "on_failure": "nope"},
     "job 'a': on_failure names 'nope', which is not a job of aios.toml (jobs: web)"),
    ({**TRIGGER, "on_success": "web"},
     "job 'a': on_success names 'web', an always job; it cannot be triggered: name a trigger job"),
    ({**TRIGGER, "after": ["web"]},
     "job 'a': after names 'web', an always job; it never ends for good: name a trigger job"),
])
def test_a_link_to_no_job_or_to_an_always_job_is_refused_with_one_line(table, message):
    specs, errors, invalid = checked({"a": table, "web": ALWAYS})
    assert "a" not in specs and errors == [message] and invalid == {"a": message}


def test_a_cycle_of_hooks_and_after_is_refused_naming_it():
    specs, errors, invalid = checked({
        "a": {**TRIGGER, "on_failure": "b"},
        "b": {**TRIGGER, "on_success": "c"},
        "c": {**TRIGGER, "after": ["b"], "on_failure": "a"},
        "free": {**TRIGGER, "after": ["a"]},
    })
    assert errors == ["jobs a -> b -> c -> a trigger each other in a cycle (a on_failure = b; b on_success = c; "
                      "c on_failure = a); remove one of these links"]
    assert set(invalid) == {"a", "b", "c"} and list(specs) == ["free"]
    assert "\n" not in errors[0]


def test_an_after_edge_closes_a_cycle_too():
    _, errors, invalid = checked({"a": {**TRIGGER, "after": ["b"], "on_success": "b"}, "b": TRIGGER})
    assert errors == ["jobs a -> b -> a trigger each other in a cycle (a on_success = b; a after b); "
                      "remove one of these links"]
    assert set(invalid) == {"a"}, "b holds no link of the cycle: it runs"


def test_a_job_that_triggers_itself_is_a_cycle():
    _, errors, _ = checked({"loop": {**TRIGGER, "on_failure": "loop"}})
    assert errors == ["job 'loop' triggers itself (loop on_failure = loop); remove this link"]


def test_a_job_listed_in_its_own_after_is_a_cycle():
    _, errors, _ = checked({"x": {**TRIGGER, "after": ["x"]}})
    assert errors == ["job 'x' triggers itself (x after x); remove this link"]


def test_hook_and_after_both_pointing_one_way_are_no_cycle():
    specs, errors, _ = checked({"a": {**TRIGGER, "on_failure": "b"}, "b": {**TRIGGER, "after": ["a"]}})
    assert errors == [] and set(specs) == {"a", "b"}


# ---------------------------------------------------------------- the rule of after

def run(ended: float | None, outcome: Outcome | None = Outcome.OK) -> Run:
    return Run(job="x", started=(ended or 100.0) - 10, ended=ended, outcome=outcome)


SPEC = parse_job("report", {**TRIGGER, "after": ["a", "b"]})


@pytest.mark.parametrize("a, b, own_start, ready", [
    (run(100), run(200), None, True),              # never ran: every success counts
    (run(100), None, None, False),                 # b never ran
    (run(100), run(200), 150, False),              # a succeeded before the report's last start
    (run(300), run(200), 150, True),               # both since
    (run(300), run(200, Outcome.FAILED), 150, False),   # b's latest run failed
    (run(300), run(200, Outcome.TIMEOUT), None, False),
    (run(300), run(None, None), None, False),      # b's latest run has not ended
    (run(300), run(150), 150, False),              # ended at the same moment: not since
])
def test_after_is_due_when_every_listed_latest_run_succeeded_since_its_own_last_start(a, b, own_start, ready):
    assert jobset.after_ready(SPEC, {"a": a, "b": b}, own_start) is ready


def test_a_job_without_after_is_never_due_by_it():
    assert jobset.after_ready(parse_job("t", TRIGGER), {}, None) is False
