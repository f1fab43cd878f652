"""AIOS on the oldest Pythons it supports, 3.9 and 3.10, with real interpreters where this
machine has them (pyenv's versions, or python3.X in /usr/bin or /usr/local/bin;
./run-tests installs tomli for each): a daemon, its CLI and a program job; without tomli
a one-line error naming it. Also `--version`, which says which Python runs AIOS."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, wait_until, write_home
from .test_cli import _ENV, READY

JOBS = """
[jobs.svc]
type = "always"
command = ["sleep", "100000"]

[jobs.prog]
type = "trigger"
program = "echo.py:main"

[jobs.late]
type = "daily"
time = "25:00"
command = ["true"]
"""
ECHO = {"echo.py": """
    import json, os, sys

    def main(*args):
        with open(os.path.join(os.environ["AIOS_HOME"], "echo.json"), "w") as f:
            json.dump({"args": list(args), "python": sys.version.split()[0]}, f)
"""}


def older_pythons() -> list[str]:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = []
    for minor in (9, 10):
        candidates = sorted(glob.glob(f"{root}/versions/3.{minor}.*/bin/python3")) + \
            [f"/usr/bin/python3.{minor}", f"/usr/local/bin/python3.{minor}"]
        found += [path for path in candidates if os.access(path, os.X_OK)][:1]
    return found


PYTHONS = older_pythons()


def run(python: str, *args: str, home: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([python, *args], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**_ENV, "AIOS_HOME": str(home)}, **kw)


def test_version_names_aios_python_and_the_package(tmp_path):
    expected = f"aios 0.1.0 (Python {sys.version.split()[0]} at {sys.executable}; package {ROOT / 'aios'})\n"
    assert run(sys.executable, "-m", "aios", "--version", home=tmp_path).stdout == expected
    assert run(sys.executable, "simple_orchestrator.py", "--version", home=tmp_path).stdout == expected
    assert not (tmp_path / "aios.toml").exists(), "--version starts nothing"


@pytest.mark.skipif(not PYTHONS, reason="no Python 3.9 or 3.10 interpreter on this machine")
@pytest.mark.parametrize("python", PYTHONS)
def test_without_tomli_the_error_is_one_line_naming_it(python, tmp_path):
    done = run(python, "-S", "simple_orchestrator.py", home=tmp_path)   # -S: no site-packages, so no tomli
    version = run(python, "-c", "import sys; print(sys.version.split()[0])", home=tmp_path).stdout.strip()
    assert done.returncode == 1
    assert done.stderr == (f"aios: reading aios.toml on Python {version} needs the tomli package: {python} -m pip "
                           "install tomli (Python 3.11 and later have it built in)\n")


@pytest.mark.skipif(not PYTHONS, reason="no Python 3.9 or 3.10 interpreter on this machine")
@pytest.mark.parametrize("python", PYTHONS)
def test_a_daemon_its_cli_and_a_program_job_run_on_it(python, home):
    if run(python, "-c", "import tomli", home=home).returncode != 0:
        pytest.skip(f"tomli is not installed for {python} (./run-tests installs it)")
    write_home(home, JOBS, ECHO)

    def aios(*args: str) -> subprocess.CompletedProcess:
        return run(python, "-m", "aios", "--home", str(home), *args, home=home)

    try:
        up = aios("up", "-d")
        assert up.returncode == 0 and READY.fullmatch(up.stdout.rstrip("\n")), up.stdout + up.stderr
        assert up.stderr == ("aios: ready; 1 job skipped (`aios status` shows why):\n"
                             "  invalid in aios.toml: job 'late': "
                             "time: '25:00' is not a time of day; use \"HH:MM\" from 00:00 to 23:59\n")
        wait_until(lambda: {j["name"]: j["status"] for j in json.loads(aios("status", "--json").stdout)}
                   == {"svc": "running", "prog": "waiting", "late": "invalid"}, what="the jobs settled")
        assert aios("trigger", "prog", "hello", "--wait").returncode == 0
        echoed = json.loads((home / "echo.json").read_text())
        assert echoed["args"] == ["hello"] and run(python, "--version", home=home).stdout.split()[1] == echoed["python"]
        assert aios("--version").stdout.startswith(f"aios 0.1.0 (Python {echoed['python']} at ")
        checked = aios("apply", "--check")
        assert checked.returncode == 1 and checked.stdout == "  2 unchanged\n"
    finally:
        down = aios("down")
    assert down.returncode == 0, down.stderr
