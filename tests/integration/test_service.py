"""`aios service`: the units it writes pass `systemd-analyze verify` (which also checks
that the interpreter named in them exists and is executable), and a real daemon started
with NOTIFY_SOCKET tells systemd it is ready. In CI (the CI variable set) a missing
systemd-analyze fails these tests (./run-tests installs Debian's systemd package)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from aios import service

from .conftest import DaemonProcess, wait_until, write_home
from .test_cli import _ENV, ROOT

HOSTILE = "we ird%h$x\"q'y;z"   # every character a unit line treats specially
PROGRAM_DIR = "py d%i$r;z"       # the same but quotes, which systemd refuses in a program's path


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing: ./run-tests installs Debian's systemd package")
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    return found


def aios_service(home: Path, config_home: Path, *args: str, python: str = sys.executable):
    """`aios --home HOME service ARGS...` run by `python`, with user units under config_home."""
    return subprocess.run([python, "-m", "aios", "--home", str(home), "service", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**_ENV, "XDG_CONFIG_HOME": str(config_home)})


def print_unit(home: Path, scope: str, python: str, config_home: Path) -> str:
    """What `aios service install --print` writes, run by the interpreter `python`."""
    done = aios_service(home, config_home, "install", f"--{scope}", "--print", python=python)
    assert done.returncode == 0, done.stderr
    assert "would write" in done.stderr
    return done.stdout


def verify(unit: str, folder: Path, scope: str) -> subprocess.CompletedProcess:
    """systemd-analyze verify on the unit saved under a unit name in `folder`."""
    path = folder / "aios-test.service"
    path.write_text(unit)
    runtime = folder / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([analyze(), "verify", "--man=no", *(["--user"] if scope == "user" else []), str(path)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"})


@pytest.fixture
def hostile_python(tmp_path) -> str:
    """This interpreter, reached through a folder whose name needs every kind of quoting:
    systemd-analyze checks that ExecStart's program exists, so a quoting mistake fails."""
    folder = tmp_path / PROGRAM_DIR
    folder.mkdir()
    (folder / "python3").symlink_to(sys.executable)
    return str(folder / "python3")


@pytest.mark.parametrize("scope", ["user", "system"])
def test_the_unit_passes_systemd_analyze_verify(tmp_path, hostile_python, scope):
    home = tmp_path / f"home {HOSTILE}"
    home.mkdir()
    unit = print_unit(home, scope, hostile_python, tmp_path / "config")
    program, home_word = service._quote(hostile_python, program=True), service._quote(str(home))
    assert f"ExecStart={program} -m aios --home {home_word} up" in unit
    assert "KillMode=process" in unit.splitlines() and "Type=notify" in unit.splitlines()
    done = verify(unit, tmp_path, scope)
    assert done.returncode == 0 and "aios-test" not in done.stdout + done.stderr, done.stdout + done.stderr


def test_verify_does_catch_a_broken_unit(tmp_path, hostile_python):
    """The check above can fail: the interpreter's path left unquoted is cut at its space."""
    unit = print_unit(tmp_path, "system", hostile_python, tmp_path / "config")
    broken = unit.replace(service._quote(hostile_python, program=True), hostile_python.replace("%", "%%"))
    done = verify(broken, tmp_path, "system")
    assert done.returncode != 0 and "is not executable" in done.stderr


@pytest.mark.skipif(service.systemd_running(), reason="systemd runs here: install would really install")
def test_install_without_systemd_prints_the_unit_and_changes_nothing(tmp_path):
    config = tmp_path / "config"
    done = aios_service(tmp_path / "h", config, "install", "--user")
    assert done.returncode == 1
    assert done.stdout.startswith("# Written by `aios service install`") and "[Service]" in done.stdout
    assert "systemd is not running on this machine, so nothing was installed" in done.stderr
    assert "docs/service.md" in done.stderr and str(config / "systemd" / "user") in done.stderr
    assert not config.exists()
    status = aios_service(tmp_path / "h", config, "status", "--user")
    assert status.returncode == 1 and "not installed" in status.stdout and "systemd is not running" in status.stdout


def test_a_daemon_started_by_systemd_says_ready_and_keeps_notify_socket_from_its_jobs(home, tmp_path):
    write_home(home, """
        [jobs.envdump]
        type = "always"
        command = ["sh", "-c", "env > \\"$AIOS_HOME/env.txt\\"; exec sleep 100000"]
    """)
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(30)
        daemon = DaemonProcess(home, env={"NOTIFY_SOCKET": path})
        fields = dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())
    assert fields["READY"] == "1" and fields["MAINPID"] == str(daemon.pid)
    assert fields["STATUS"].startswith("ready in ") and fields["STATUS"].endswith("; 1 jobs")
    env = wait_until(lambda: (home / "env.txt").exists() and (home / "env.txt").read_text(), what="the job's env")
    assert "AIOS_JOB=envdump" in env and "NOTIFY_SOCKET" not in env
    assert daemon.terminate() == 0
