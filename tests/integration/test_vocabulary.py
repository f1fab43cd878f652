"""Hooks, `after`, `instances` and `reload` on a real daemon (`aios up -d`) with real
processes, files and a real local HTTP server: what only a real run shows (the facts in a
real process's argv and environment, the notify program posting, each copy's own log,
a real HUP handled by a real program), driven through the CLI as a user would."""
from __future__ import annotations

import json
import sqlite3
import textwrap

from .conftest import ROOT, runs, wait_until, write_home
from .test_cli import aios, daemon, ok, popen_aios, read_until, status, terminate  # noqa: F401 (daemon: a fixture)
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


INSTANCES = r"""
[jobs.web]
type = "always"
shell = true
command = "trap 'echo reloaded $AIOS_INSTANCE' HUP; echo copy $AIOS_INSTANCE of $AIOS_JOB; while :; do sleep 0.05; done"
instances = {n}
reload_signal = "HUP"

[jobs.plain]
type = "always"
command = ["sleep", "100000"]
"""


def test_instances_by_the_group_name_each_with_its_own_log_and_reload_by_hup(home, daemon):
    write_home(home, INSTANCES.format(n=3))
    daemon.up()
    wait_until(lambda: all((home / "logs" / f"web.{i}.log").exists() and "copy" in
                           (home / "logs" / f"web.{i}.log").read_text() for i in range(3)), what="three copies")
    for i in range(3):
        assert (home / "logs" / f"web.{i}.log").read_text() == f"copy {i} of web.{i}\n"
    rows = json.loads(ok(aios(home, "status", "web", "--json")))
    assert [(r["name"], r["status"]) for r in rows] == [(f"web.{i}", "running") for i in range(3)]
    assert [line.split(None, 1) for line in ok(aios(home, "logs", "web")).splitlines()] == [
        [f"web.{i}", f"copy {i} of web.{i}"] for i in range(3)], "each copy's lines, led by its name"

    pids = [r["pid"] for r in rows]
    follower, seen = popen_aios(home, "logs", "web", "-f", "-n", "1"), []
    try:
        assert read_until(follower, "copy 2 of web.2\n", seen).count("copy 1") == 1
        seen.clear()
        ok(aios(home, "restart", "web.1"))
        assert read_until(follower, "copy 1 of web.1\n", seen).split()[0] == "web.1"
    finally:
        terminate(follower)
    pids[1] = wait_until(lambda: status(home)["web.1"]["status"] == "running" and status(home)["web.1"]["pid"],
                         what="web.1 restarted")
    assert pids[1] != rows[1]["pid"]

    follower, seen = popen_aios(home, "logs", "web", "-f", "-n", "1"), []
    try:
        read_until(follower, "web.2 copy 2 of web.2\n", seen)
        seen.clear()
        assert ok(aios(home, "reload", "web")) == f"web: reload_signal sent to pid {', '.join(map(str, pids))}\n"
        for i in range(3):
            read_until(follower, f"web.{i} reloaded {i}\n", seen)
    finally:
        terminate(follower)
    assert [r["pid"] for r in json.loads(ok(aios(home, "status", "web", "--json")))] == pids, "reload restarts none"
    refused = aios(home, "reload", "plain")
    assert refused.returncode == 1 and refused.stderr == (
        "aios: plain: job 'plain' has no reload_signal; use `aios restart plain`, or set reload_signal = \"HUP\" "
        "in its table if the program reloads on a signal\n")

    ok(aios(home, "stop", "web.1"))
    wait_until(lambda: status(home)["web.1"]["status"] == "stopped", what="web.1 stopped")
    assert [status(home)[f"web.{i}"]["status"] for i in (0, 2)] == ["running", "running"]

    (home / "aios.toml").write_text(INSTANCES.format(n=2))
    ok(aios(home, "apply"))
    wait_until(lambda: "web.2" not in status(home), what="web.2 removed")
    assert status(home)["web.0"]["pid"] == pids[0], "the other copies run on untouched"
    daemon.down()
    offline = aios(home, "status", "web", "--json")
    assert offline.returncode == 3 and [r["name"] for r in json.loads(offline.stdout)] == ["web.0", "web.1"]

