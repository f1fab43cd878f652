"""aios.jobset: hooks and `after` checked across jobs (dangling names, always targets,
cycles), the copies of `instances`, and the rule of `after` as a table."""
from __future__ import annotations

import pytest

from aios import jobset
from aios.jobtable import parse_job
from aios.spec import Outcome, Run

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


# ---------------------------------------------------------------- instances

def expanded(tables: dict) -> tuple[dict, dict, list, dict]:
    specs = {name: parse_job(name, table) for name, table in tables.items()}
    errors, invalid = [], {}
    specs, out = jobset.expand(specs, dict(tables), errors, invalid)
    return specs, out, errors, invalid


def test_instances_become_numbered_copies_with_the_table_less_its_count():
    specs, tables, errors, _ = expanded({"web": {**ALWAYS, "instances": 3}, "other": TRIGGER})
    assert list(specs) == ["web.0", "web.1", "web.2", "other"] and errors == []
    assert [(s.instance, s.instance_of, s.instances) for s in list(specs.values())[:3]] == [
        (0, "web", None), (1, "web", None), (2, "web", None)]
    assert tables["web.1"] == ALWAYS
    assert specs["web.0"] == jobset.as_copy(parse_job("web", {**ALWAYS, "instances": 2}), "web", 0)


def test_the_copies_do_not_change_with_the_count():
    three, _, _, _ = expanded({"web": {**ALWAYS, "instances": 3}})
    two, _, _, _ = expanded({"web": {**ALWAYS, "instances": 2}})
    assert two == {name: three[name] for name in ("web.0", "web.1")}


def test_one_instance_is_still_a_copy():
    specs, _, _, _ = expanded({"web": {**ALWAYS, "instances": 1}})
    assert list(specs) == ["web.0"]


def test_copies_that_clash_with_a_job_or_are_too_long_are_refused():
    _, _, errors, invalid = expanded({"web": {**ALWAYS, "instances": 2}, "Web.1": TRIGGER})
    assert errors == ["job 'web': instances = 2 names a copy 'web.1', which is also a job of aios.toml; "
                      "rename one of them"] and set(invalid) == {"web"}
    long = "x" * 62
    _, _, errors, _ = expanded({long: {**ALWAYS, "instances": 11}})
    assert errors == [f"job {long!r}: instances = 11 names a copy '{long}.10', which is longer than 64 "
                      "characters; rename one of them"]


def test_group_of_and_kept_by():
    assert [jobset.group_of(n) for n in ("web.2", "web", "a.b.10", "web.x", "web.")] == ["web", None, "a.b", None, None]
    invalid = {"web": "job 'web': bad"}
    assert jobset.kept_by("web.3", invalid) == "job 'web': bad"
    assert jobset.kept_by("web", invalid) == "job 'web': bad"
    assert jobset.kept_by("other.1", invalid) is None


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
