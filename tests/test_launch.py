"""argv, environment and working directory of a run: arguments never meet a shell."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from aios import launch, supervisor
from aios.errors import SpawnError
from aios.jobtable import parse_job
from aios.spec import Settings, Trigger, replace

HOME = Path("/srv/aios")
SETTINGS = Settings(device_id="lab-1", web_host="127.0.0.1", web_port=8787)


def test_program_jobs_get_one_json_payload_for_the_runner():
    spec = parse_job("p", {"type": "trigger", "program": "tools/p.py:main", "args": ["fixed"],
                           "kwargs": {"model": "big", "keep": 1}})
    trigger = Trigger(job="p", args=("; rm -rf /", 3), kwargs={"model": "small"})
    argv = launch.argv(spec, trigger, HOME)
    assert argv[:4] == [sys.executable, launch.RUNNER, "/srv/aios/Programs", "tools/p.py:main"]
    assert json.loads(argv[4]) == {"args": ["fixed", "; rm -rf /", 3], "kwargs": {"model": "small", "keep": 1}}
    assert len(argv) == 5


def test_command_jobs_get_arguments_appended_verbatim():
    spec = parse_job("c", {"type": "trigger", "command": ["convert", "--in"]})
    argv = launch.argv(spec, Trigger(job="c", args=("a b", "$(x)", 5, None, [1])), HOME)
    assert argv == ["convert", "--in", "a b", "$(x)", "5", "null", "[1]"]


def test_shell_commands_get_arguments_as_positional_parameters():
    spec = parse_job("s", {"type": "trigger", "shell": True, "command": 'echo "$1" | wc -c'})
    argv = launch.argv(spec, Trigger(job="s", args=("`reboot`",)), HOME)
    assert argv == ["/bin/sh", "-c", 'echo "$1" | wc -c', "s", "`reboot`"]


def test_environment_names_the_job_run_device_and_home():
    spec = parse_job("e", {"type": "always", "program": "e.py:main", "env": {"LANG": "C", "AIOS_JOB": "spoof"}})
    env = launch.environment(spec, 42, {"PATH": "/bin", "LANG": "en"}, HOME, SETTINGS)
    assert env["AIOS_JOB"] == "e" and env["AIOS_RUN_ID"] == "42" and env["AIOS_DEVICE_ID"] == "lab-1"
    assert env["AIOS_HOME"] == "/srv/aios" and env["LANG"] == "C" and env["PATH"] == "/bin"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_working_dir_defaults_to_home():
    assert launch.working_dir(parse_job("w", {"type": "always", "command": ["x"]}), HOME) == "/srv/aios"
    spec = parse_job("w", {"type": "always", "command": ["x"], "cwd": "/tmp"})
    assert launch.working_dir(spec, HOME) == "/tmp"


EXEC_PROBLEMS = [
    ({"command": ["echo"]}, ("ok", "a\0b"), "argument 2 contains a NUL byte"),
    ({"command": ["echo"]}, ("\ud800",), "argument 1 cannot be encoded for exec: lone surrogate '\\ud800'"),
    ({"command": "echo \"$1\"", "shell": True}, ("x", 2, "\0"), "argument 3 contains a NUL byte"),
    ({"command": ["echo"]}, ("x" * (128 * 1024),),
     "argument 1 is 131072 bytes; exec takes less than 128 KiB per string"),
    ({"command": ["echo"]}, ("caf\udce9", {"k": "\0\ud800"}, None, 3), None),   # escaped byte; JSON escapes the rest
    ({"command": ["echo"]}, ("x" * (128 * 1024 - 1),), None),
    ({"program": "p.py:main"}, ("\0", "\ud800"), None),                       # one JSON string: escaped
    ({"program": "p.py:main"}, ("x" * (128 * 1024),),
     "arguments are 131097 bytes as JSON; a program job takes less than 128 KiB (pass a file path instead)"),
]


@pytest.mark.parametrize("how, args, problem", EXEC_PROBLEMS, ids=[str(i) for i in range(len(EXEC_PROBLEMS))])
def test_exec_problem_names_the_argument_exec_can_never_take(how, args, problem):
    spec = parse_job("t", {"type": "trigger", **how})
    assert launch.exec_problem(spec, Trigger(job="t", args=args)) == problem
    assert launch.exec_problem(spec) is None


def test_exec_problem_agrees_with_a_real_spawn(tmp_path):
    """What exec_problem lets through starts; what it refuses fails to start."""
    spec = parse_job("t", {"type": "trigger", "command": ["true"]})
    fd = os.open(tmp_path / "log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
    try:
        for args in (("x" * (128 * 1024 - 1),), ("x" * (128 * 1024),), ("a\0",), ("\ud800",), ("caf\udce9",)):
            trigger = Trigger(job="t", args=args)
            problem = launch.exec_problem(spec, trigger)
            try:
                proc = supervisor.spawn(launch.argv(spec, trigger, HOME), dict(os.environ), "/", fd)
            except SpawnError:
                assert problem is not None
            else:
                assert problem is None
                while supervisor.reap(proc) is None:
                    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    finally:
        os.close(fd)


def test_the_daemons_own_variables_never_reach_a_job():
    spec = parse_job("e", {"type": "always", "command": ["x"], "env": {"AIOS_EXTRA": "mine", "AIOS_RUN_ID": "spoof"}})
    base = {"PATH": "/bin", "AIOS_READY_FD": "5", "AIOS_REEXEC_FDS": "3,4", "AIOS_DB": "postgresql://u:pw@db/aios",
            "AIOS_HOME": "/elsewhere", "AIOS_JOB": "parent", "NOTIFY_SOCKET": "/run/systemd/notify",
            "LISTEN_FDS": "1", "LISTEN_PID": "1", "WATCHDOG_USEC": "1000", "HOME": "/root"}
    env = launch.environment(spec, 7, base, HOME, SETTINGS)
    assert {k: env[k] for k in env if k.startswith("AIOS_")} == {
        "AIOS_EXTRA": "mine", "AIOS_JOB": "e", "AIOS_RUN_ID": "7", "AIOS_DEVICE_ID": "lab-1",
        "AIOS_HOME": "/srv/aios", "AIOS_WEB_HOST": "127.0.0.1", "AIOS_WEB_PORT": "8787"}
    assert env["PATH"] == "/bin" and env["HOME"] == "/root"
    assert not {"NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "WATCHDOG_USEC"} & set(env)


def test_run_token_is_a_nonce_and_a_keyed_blake2b_of_the_job_and_reaches_the_environment():
    import hashlib

    secret = bytes(range(32))
    token = launch.run_token(secret, "e", "00ff")
    assert token == "00ff." + hashlib.blake2b(b"aios run e 00ff", key=secret, digest_size=16).hexdigest()
    fresh = launch.run_token(secret, "e")
    assert fresh != launch.run_token(secret, "e") and launch.token_matches(secret, "e", fresh)
    assert launch.token_matches(secret, "e", token)
    assert not launch.token_matches(secret, "f", token) and not launch.token_matches(bytes(32), "e", token)
    assert not launch.token_matches(secret, "e", None) and not launch.token_matches(secret, "e", "00ff.forged")
    spec = parse_job("e", {"type": "always", "command": ["x"], "env": {"AIOS_RUN_TOKEN": "forged"}})
    assert launch.environment(spec, 42, {}, HOME, SETTINGS, token)["AIOS_RUN_TOKEN"] == token
    env = launch.environment(spec, 42, {"AIOS_RUN_TOKEN": "the daemon's"}, HOME, SETTINGS)
    assert env["AIOS_RUN_TOKEN"] == "forged"    # no token given: the job's own env, never the daemon's


@pytest.mark.parametrize("size", [0, 15, 65])
def test_run_token_wants_a_real_secret(size):
    with pytest.raises(ValueError, match=f"16 to 64 bytes, not {size}"):
        launch.run_token(bytes(size), "job")


def test_plan_gathers_what_spawn_needs():
    spec = parse_job("p", {"type": "trigger", "command": ["echo"], "cwd": "/tmp", "umask": "027"})
    plan = launch.plan(spec, Trigger(job="p", args=("a",)), 9, {"PATH": "/bin"}, HOME, SETTINGS, token="t9")
    assert plan.argv == ["echo", "a"] and plan.cwd == "/tmp"
    assert plan.env["AIOS_RUN_TOKEN"] == "t9" and plan.env["AIOS_RUN_ID"] == "9"
    assert plan.options == {"umask": 0o027, "unit": "p", "mark": "AIOS_RUN_TOKEN=t9"}
    assert launch.plan(spec, None, 9, {}, HOME, SETTINGS).options == {"umask": 0o027, "unit": "p"}


def test_program_jobs_go_through_their_zygote_with_the_preloads_of_both_levels():
    settings = Settings(device_id="d", python_preload=("json", "decimal"), python_env={"OMP_NUM_THREADS": "1"})
    program = parse_job("p", {"type": "trigger", "program": "p.py:main", "preload": ["email", "json"]})
    plan = launch.plan(program, None, 1, {}, HOME, settings)
    assert (plan.options["start"], plan.options["preload"]) == ("zygote", ("json", "decimal", "email"))
    assert plan.env["OMP_NUM_THREADS"] == "1"
    opted_out = parse_job("q", {"type": "trigger", "program": "p.py:main", "start": "spawn",
                                "env": {"OMP_NUM_THREADS": "4"}})
    plan = launch.plan(opted_out, None, 1, {}, HOME, settings)
    assert plan.options["start"] == "spawn" and plan.env["OMP_NUM_THREADS"] == "4", "the job's env wins"
    command = launch.plan(parse_job("c", {"type": "trigger", "command": ["true"]}), None, 1, {}, HOME, settings)
    assert "start" not in command.options and "OMP_NUM_THREADS" not in command.env


@pytest.mark.parametrize("table, message", [
    ({"command": ["true"], "start": "spawn"}, "job 'x': start applies to program jobs"),
    ({"command": ["true"], "preload": ["json"]}, "job 'x': preload applies to program jobs"),
    ({"program": "p.py:f", "preload": ["json", "../x"]}, "job 'x': preload = ['json', '../x'] must be a list"),
    ({"program": "p.py:f", "start": "zygote "}, "job 'x': start = 'zygote '; use \"zygote\""),
])
def test_start_and_preload_are_checked(table, message):
    from aios.spec import SpecError

    with pytest.raises(SpecError) as caught:
        parse_job("x", {"type": "trigger", **table})
    assert str(caught.value).startswith(message)


# ---------------------------------------------------------------- env_file


def test_env_file_is_read_at_each_plan_between_the_daemons_env_and_the_jobs(tmp_path):
    (tmp_path / ".env").write_text("export TOKEN='s3cret'\nLANG=de_DE.UTF-8\nPATH=/opt/bin\nAIOS_JOB=spoof\n")
    spec = parse_job("e", {"type": "always", "command": ["x"], "env_file": ".env", "env": {"LANG": "C"}})
    env = launch.plan(spec, None, 1, {"PATH": "/bin", "TOKEN": "old"}, tmp_path, SETTINGS).env
    assert (env["TOKEN"], env["LANG"], env["PATH"], env["AIOS_JOB"]) == ("s3cret", "C", "/opt/bin", "e")
    (tmp_path / ".env").write_bytes(b"TOKEN=rotated\nRAW=caf\xe9\n")     # bytes that are not UTF-8 pass as they are
    env = launch.plan(spec, None, 2, {}, tmp_path, SETTINGS).env
    assert env["TOKEN"] == "rotated" and os.fsencode(env["RAW"]) == b"caf\xe9"


@pytest.mark.parametrize("content, message", [
    (None, "env_file '{path}': No such file or directory (ENOENT)"),
    ("A=1\nhunter2\n", "env_file '{path}': line 2: expected KEY=VALUE with KEY made of letters, digits and '_'"),
    ("A=hunter2\0\n", "env_file '{path}': A contains a NUL byte"),
    ("A=" + "x" * (1 << 20), "env_file '{path}': larger than 1024 KiB"),
])
def test_a_bad_env_file_is_a_spawn_error_that_never_shows_a_value(tmp_path, content, message):
    path = tmp_path / "job.env"
    if content is not None:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    spec = parse_job("e", {"type": "always", "command": ["x"], "env_file": "job.env"})
    with pytest.raises(SpawnError) as info:
        launch.plan(spec, None, 1, {}, tmp_path, SETTINGS)
    assert str(info.value) == f"cannot start job 'e': " + message.format(path=path)
    assert "hunter2" not in str(info.value)


def test_plan_passes_the_jobs_limits_to_spawn():
    spec = parse_job("l", {"type": "always", "command": ["x"], "memory_max": "64M", "nice": 5, "ioclass": "idle"})
    assert launch.plan(spec, None, 1, {}, HOME, SETTINGS).options["limits"] == {
        "memory_max": 64 << 20, "nice": 5, "ioclass": "idle"}


def test_cgroup_scope_is_stable_for_a_home_and_differs_between_homes():
    scope = launch.cgroup_scope(Path("/srv/aios"))
    assert scope == launch.cgroup_scope(Path("/srv/aios")) != launch.cgroup_scope(Path("/srv/aios2"))
    assert len(scope) == len("aios-") + 12 and scope.startswith("aios-")


# ---------------------------------------------------------------- what the daemon puts in a trigger

FACTS = {"kind": "on_failure", "job": "backup", "outcome": "failed", "exit_code": 3, "run_id": 42,
         "why": "failed after 2 attempts"}


def test_a_hooks_facts_become_arguments_and_variables_and_leave_the_keywords():
    spec = parse_job("tell", {"type": "trigger", "program": "notify.py:main", "args": ["first"],
                              "kwargs": {"url": "http://x/"}})
    trigger = Trigger(job="tell", kwargs={"aios_hook": FACTS, "extra": 1})
    plan = launch.plan(spec, trigger, 9, {}, HOME, SETTINGS)
    assert json.loads(plan.argv[-1]) == {"args": ["first", "backup", "failed", 3, 42],
                                         "kwargs": {"url": "http://x/", "extra": 1}}
    assert {k: v for k, v in plan.env.items() if k.startswith("AIOS_HOOK_")} == {
        "AIOS_HOOK_KIND": "on_failure", "AIOS_HOOK_JOB": "backup", "AIOS_HOOK_OUTCOME": "failed",
        "AIOS_HOOK_WHY": "failed after 2 attempts", "AIOS_HOOK_EXIT_CODE": "3", "AIOS_HOOK_RUN_ID": "42"}


def test_a_command_hook_gets_the_facts_as_argv_and_a_signal_death_as_null():
    spec = parse_job("tell", {"type": "trigger", "command": ["tell.sh"]})
    facts = {**FACTS, "exit_code": None, "outcome": "killed"}
    plan = launch.plan(spec, Trigger(job="tell", kwargs={"aios_hook": facts}), 9, {}, HOME, SETTINGS)
    assert plan.argv == ["tell.sh", "backup", "killed", "null", "42"]
    assert plan.env["AIOS_HOOK_EXIT_CODE"] == ""


def test_an_after_trigger_names_its_list_and_adds_no_argument():
    spec = parse_job("report", {"type": "trigger", "command": ["report"]})
    plan = launch.plan(spec, Trigger(job="report", kwargs={"aios_after": ["a", "b"]}), 9, {}, HOME, SETTINGS)
    assert plan.argv == ["report"] and plan.env["AIOS_AFTER"] == "a,b"


@pytest.mark.parametrize("kwargs, problem", [
    ({"aios_hook": "fail"}, "kwargs aios_hook must be an object of kind, job, outcome, why, exit_code, run_id"),
    ({"aios_hook": {"job": "a\0b"}}, "kwargs aios_hook: job must be short text"),
    ({"aios_hook": {"why": "x" * 5000}}, "kwargs aios_hook: why must be short text"),
    ({"aios_hook": {"exit_code": "3"}}, "kwargs aios_hook: exit_code must be an integer or null"),
    ({"aios_hook": {"run_id": True}}, "kwargs aios_hook: run_id must be an integer or null"),
    ({"aios_hook": {"pid": 1}}, "kwargs aios_hook must be an object of kind, job, outcome, why, exit_code, run_id"),
    ({"aios_after": ["a", "../b"]}, "kwargs aios_after must be a list of job names"),
    ({"aios_hook": {"job": "a"}, "aios_after": ["a"]}, None),
])
def test_reserved_keywords_in_a_trigger_are_checked_when_it_is_submitted(kwargs, problem):
    spec = parse_job("c", {"type": "trigger", "command": ["c"]})
    assert launch.exec_problem(spec, Trigger(job="c", kwargs=kwargs)) == problem


def test_a_copy_finds_its_number_in_AIOS_INSTANCE():
    spec = parse_job("web.1", {"type": "always", "command": ["web"]})
    assert "AIOS_INSTANCE" not in launch.environment(spec, 1, {}, HOME, SETTINGS)
    env = launch.environment(replace(spec, instance=1, instance_of="web"), 1, {}, HOME, SETTINGS)
    assert (env["AIOS_INSTANCE"], env["AIOS_JOB"]) == ("1", "web.1")
