"""argv, environment and working directory of a run: arguments never meet a shell."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from aios import launch
from aios.spec import Settings, Trigger, parse_job

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
