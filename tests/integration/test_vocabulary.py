"""Hooks and `after` on a real daemon (`aios up -d`) with real processes, files and a real
local HTTP server: what only a real run shows (the facts in a real process's argv and
environment, the notify program posting), driven through the CLI as a user would."""
from __future__ import annotations

import json
import sqlite3
import textwrap

from .conftest import ROOT, runs, wait_until, write_home
from .test_cli import aios, daemon, ok  # noqa: F401  (daemon: a fixture)
from ..test_programs import hook_server  # noqa: F401  (a real local HTTP server)

HOOKS = """
[jobs.flaky]
type = "trigger"
command = ["sh", "-c", "echo about to fail; exit 3"]
on_failure = "tell"
on_success = "post"

[jobs.tell]
type = "trigger"
command = ["sh", "-c", "echo \\"$@\\" $AIOS_HOOK_KIND $AIOS_HOOK_EXIT_CODE \\"$AIOS_HOOK_WHY\\" > hook.txt", "tell"]

[jobs.post]
type = "trigger"
program = "notify.py:main"
kwargs = {{ url = "{url}" }}

[jobs.report]
type = "trigger"
command = ["sh", "-c", "echo $AIOS_AFTER >> report.txt"]
after = ["flaky"]
"""


def test_a_failed_run_triggers_its_hook_with_the_facts_and_a_success_posts_to_a_webhook(home, daemon, hook_server):
    server = hook_server()
    write_home(home, HOOKS.format(url=server.url))
    (home / "Programs" / "notify.py").write_bytes((ROOT / "aios" / "programs" / "notify.py").read_bytes())
    daemon.up()
    ok(aios(home, "trigger", "flaky"))
    text = wait_until(lambda: (home / "hook.txt").exists() and (home / "hook.txt").read_text(), what="the hook's run")
    flaky = runs(home, "flaky")[-1]
    assert text == f"flaky failed 3 {flaky['id']} on_failure 3 failed after 1 attempt\n"
    with sqlite3.connect(home / "orchestrator.db") as db:
        kwargs = json.loads(db.execute("SELECT kwargs FROM triggers WHERE job = 'tell'").fetchone()[0])
    assert kwargs["aios_hook"] == {"kind": "on_failure", "job": "flaky", "outcome": "failed", "exit_code": 3,
                                   "run_id": flaky["id"], "why": "failed after 1 attempt"}

    (home / "aios.toml").write_text(textwrap.dedent(HOOKS.format(url=server.url)).replace("exit 3", "exit 0"))
    ok(aios(home, "apply"))
    ok(aios(home, "trigger", "flaky"))
    wait_until(lambda: server.received, what="the webhook's POST")
    body = server.received[0][2]
    assert (body["job"], body["outcome"], body["kind"], body["exit_code"]) == ("flaky", "ok", "on_success", 0)
    wait_until(lambda: (home / "report.txt").exists(), what="the job after flaky")
    assert (home / "report.txt").read_text() == "flaky\n"
