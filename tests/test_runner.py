"""runner: run as a real script in a real subprocess, with a Programs folder in tmp_path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = str(Path(__file__).resolve().parent.parent / "aios" / "runner.py")
LIVENESS = 60.0

JOBS = '''
import json, sys
import helper

def echo(*args, **kwargs):
    print(json.dumps({"args": args, "kwargs": kwargs, "argv": sys.argv,
                      "path0": sys.path[0], "aios": [m for m in sys.modules if "aios" in m],
                      "helper": helper.VALUE, "name": __name__, "path": sys.path}))

def code(n):
    return n

def nothing():
    print("ran")

def boom():
    raise ValueError("kaboom")

def leave(n):
    sys.exit(n)

def chatty():
    print("out line")
    print("err line", file=sys.stderr)

NOT_A_FUNCTION = 3
'''


@pytest.fixture
def programs(tmp_path):
    folder = tmp_path / "Programs"
    (folder / "sub").mkdir(parents=True)
    (folder / "jobs.py").write_text(JOBS)
    (folder / "helper.py").write_text("VALUE = 'from Programs'\n")
    (folder / "sub" / "nested.py").write_text(
        "def hello(who):\n    print('hello', who, 'from', __name__)\n")
    (folder / "broken.py").write_text("import no_such_module_for_aios_tests\n")
    return folder


def run(programs, target, payload=None, raw=None, cwd=None):
    text = raw if raw is not None else json.dumps(payload or {"args": [], "kwargs": {}})
    return subprocess.run(
        [sys.executable, RUNNER, str(programs), target, text],
        capture_output=True, text=True, timeout=LIVENESS, cwd=cwd, stdin=subprocess.DEVNULL,
    )


def refused(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aios runner: "), result.stderr
    return lines[0]


# ---------------------------------------------------------------- calls


def test_args_and_kwargs_arrive_unchanged(programs, tmp_path):
    nasty = ["; rm -rf /", "it's \"quoted\"", "$(whoami)", "`id`", "a\nb", "ünïcødé", ""]
    payload = {"args": [*nasty, 3, 1.5, None, True, [1, "x"]],
               "kwargs": {"cmd": "; rm -rf /", "q": "'\"", "n": {"k": [1, 2]}}}
    result = run(programs, "jobs.py:echo", payload, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["args"] == payload["args"] and seen["kwargs"] == payload["kwargs"]
    assert seen["argv"] == [os.path.join(str(programs), "jobs.py")]
    assert seen["path0"] == str(programs)
    assert os.path.dirname(RUNNER) not in seen["path"]      # aios/ must not shadow imports
    assert seen["aios"] == [] and seen["helper"] == "from Programs" and seen["name"] == "jobs"


def test_missing_payload_keys_mean_no_arguments(programs):
    result = run(programs, "jobs.py:nothing", raw="{}")
    assert result.returncode == 0 and result.stdout == "ran\n"


def test_file_in_a_subfolder(programs):
    result = run(programs, "sub/nested.py:hello", {"args": ["world"]})
    assert result.returncode == 0 and result.stdout == "hello world from nested\n"


@pytest.mark.parametrize("value, expected", [(0, 0), (3, 3), (42, 42), (None, 0)])
def test_returned_int_is_the_exit_code(programs, value, expected):
    target = "jobs.py:code" if value is not None else "jobs.py:nothing"
    payload = {"args": [value]} if value is not None else None
    assert run(programs, target, payload).returncode == expected


def test_sys_exit_keeps_its_code(programs):
    assert run(programs, "jobs.py:leave", {"args": [5]}).returncode == 5


def test_exception_exits_1_with_traceback(programs):
    result = run(programs, "jobs.py:boom")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: kaboom" in result.stderr


def test_import_error_in_the_program_is_its_own_failure(programs):
    result = run(programs, "broken.py:anything")
    assert result.returncode == 1
    assert "no_such_module_for_aios_tests" in result.stderr


def test_stdout_and_stderr_are_flushed(programs):
    result = run(programs, "jobs.py:chatty")
    assert result.returncode == 0
    assert result.stdout == "out line\n" and result.stderr == "err line\n"


# ---------------------------------------------------------------- refusals


def test_missing_file(programs):
    assert "nope.py" in refused(run(programs, "nope.py:f"))


def test_missing_function_and_non_function(programs):
    assert "'missing'" in refused(run(programs, "jobs.py:missing"))
    assert "NOT_A_FUNCTION" in refused(run(programs, "jobs.py:NOT_A_FUNCTION"))


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"args": 3}', '{"kwargs": []}', ""])
def test_bad_payload(programs, raw):
    assert "payload" in refused(run(programs, "jobs.py:echo", raw=raw))


def test_bad_program_spec(programs):
    refused(run(programs, "jobs.py"))
    refused(run(programs, ":echo"))


def test_wrong_number_of_arguments(programs):
    result = subprocess.run([sys.executable, RUNNER, str(programs)], capture_output=True,
                            text=True, timeout=LIVENESS)
    assert "usage" in refused(result)


@pytest.fixture
def outside(tmp_path):
    """A program outside Programs that must never run (it would write a marker)."""
    path = tmp_path / "x.py"
    marker = tmp_path / "ESCAPED"
    path.write_text(f"open({str(marker)!r}, 'w').close()\ndef f():\n    pass\n")
    return path, marker


def test_relative_escape_is_refused(programs, outside):
    assert "outside" in refused(run(programs, "../x.py:f"))
    assert "outside" in refused(run(programs, "sub/../../x.py:f"))
    assert not outside[1].exists()


def test_absolute_path_is_refused(programs, outside):
    assert "relative" in refused(run(programs, f"{outside[0]}:f"))
    assert not outside[1].exists()


def test_symlink_pointing_outside_is_refused(programs, outside):
    (programs / "link.py").symlink_to(outside[0])
    (programs / "linkdir").symlink_to(outside[0].parent, target_is_directory=True)
    assert "outside" in refused(run(programs, "link.py:f"))
    assert "outside" in refused(run(programs, "linkdir/x.py:f"))
    assert not outside[1].exists()


def test_symlink_inside_programs_is_fine(programs):
    (programs / "alias.py").symlink_to(programs / "sub" / "nested.py")
    result = run(programs, "alias.py:hello", {"args": ["again"]})
    assert result.returncode == 0 and result.stdout == "hello again from alias\n"


def test_programs_can_import_the_aios_package(tmp_path):
    """The folder holding aios is appended to sys.path, so a program can use its client."""
    programs = tmp_path / "Programs"
    programs.mkdir()
    (programs / "uses_aios.py").write_text(
        "import sys\n\ndef main():\n    import aios.control\n    print(aios.control.SOCKET_NAME, sys.path[-1])\n")
    done = subprocess.run([sys.executable, RUNNER, str(programs), "uses_aios.py:main", '{"args": [], "kwargs": {}}'],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["aios.sock", str(Path(RUNNER).resolve().parent.parent)]
