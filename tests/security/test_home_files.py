"""A home that cannot be turned against its owner, on real daemons: a symbolic link planted
at each file the daemon (or `aios`) opens in the home, pointing at a file an attacker
would like truncated, leaves that file byte for byte as it was, and gives a one-line
error or a safe outcome; a home or database another user could change is refused in one
line; an edited config cache runs nothing aios.toml does not name."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aios import control
from tests.integration.conftest import LIVENESS, ROOT, DaemonProcess, wait_until, write_home
from tests.processes import NOBODY

VICTIM = b"root:x:0:0:root:/root:/bin/bash\n" * 100

TOML = """
[jobs.svc]
type = "always"
command = ["sleep", "100000"]

[jobs.other]
type = "always"
command = ["sleep", "100000"]
"""


@pytest.fixture
def victim(tmp_path):
    """A file outside the home standing for /etc/passwd; untouched at the end of each test."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "passwd"
    path.write_bytes(VICTIM)
    yield path
    assert path.read_bytes() == VICTIM, "a write went through a planted link"
    assert sorted(p.name for p in folder.iterdir()) == ["passwd"], "a file was made through a planted link"


def aios(home, *argv, input=None):
    return subprocess.run([sys.executable, "-m", "aios", "--home", str(home), *argv], capture_output=True,
                          text=True, cwd=ROOT, input=input, timeout=LIVENESS)


def status(home) -> dict:
    return {job["name"]: job for job in control.call(home, "status")}


def refused(home) -> str:
    """Start a daemon that must refuse: its one line of output."""
    daemon = DaemonProcess(home)
    assert daemon.proc.wait(LIVENESS) == 1
    lines = daemon.output().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def started(home) -> DaemonProcess:
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    return daemon


def test_a_link_at_a_jobs_log_fails_that_job_with_the_reason_and_nothing_else(home, victim):
    write_home(home, TOML)
    (home / "logs").mkdir()
    (home / "logs" / "svc.log").symlink_to(victim)
    daemon = started(home)
    wait_until(lambda: status(home)["svc"]["status"] in ("backoff", "failed"), what="svc refused")
    jobs = status(home)
    assert f"{home}/logs/svc.log is a symbolic link" in jobs["svc"]["why"]
    assert jobs["other"]["status"] == "running"
    assert daemon.terminate() == 0


def test_a_link_at_the_logs_folder_makes_nothing_in_its_target(home, victim):
    write_home(home, TOML)
    (home / "logs").symlink_to(victim.parent)
    daemon = started(home)
    wait_until(lambda: status(home)["svc"]["status"] in ("backoff", "failed"), what="svc refused")
    assert f"{home}/logs is a symbolic link" in status(home)["svc"]["why"]
    assert daemon.terminate() == 0


def test_rotation_replaces_links_planted_at_the_copies(home, victim):
    write_home(home, """
[logs]
max_size = "4KB"
keep = 2

[jobs.chatty]
type = "always"
command = ["sh", "-c", "while true; do echo 0123456789012345678901234567890123456789; sleep 0.01; done"]
""")
    (home / "logs").mkdir()
    for n in (1, 2):
        (home / "logs" / f"chatty.log.{n}").symlink_to(victim)
    daemon = started(home)
    wait_until(lambda: not (home / "logs" / "chatty.log.2").is_symlink(), what="two rotations")
    assert not (home / "logs" / "chatty.log.1").is_symlink()
    assert daemon.terminate() == 0


@pytest.mark.parametrize("name", ["orchestrator.log", "aios.pid", "aios.sock", ".aios.toml.cache"])
def test_a_link_at_a_file_of_the_daemon_is_not_followed_and_the_daemon_runs(home, victim, name):
    write_home(home, TOML)
    (home / name).symlink_to(victim)
    daemon = started(home)
    wait_until(lambda: status(home)["svc"]["status"] == "running", what="svc running")
    assert daemon.terminate() == 0


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
def test_a_link_at_the_database_or_beside_it_stops_the_start_in_one_line(home, victim, suffix):
    write_home(home, TOML)
    if suffix:
        assert started(home).terminate() == 0
    (home / f"orchestrator.db{suffix}").unlink(missing_ok=True)
    (home / f"orchestrator.db{suffix}").symlink_to(victim)
    line = refused(home)
    assert line.startswith(f"aios: state database{' file' if suffix else ''} {home}/orchestrator.db{suffix} "
                           "is a symbolic link; AIOS never follows one")


def test_apply_and_its_lock_never_write_through_links(home, victim, tmp_path):
    write_home(home, TOML)
    daemon = started(home)
    (home / "aios.toml.prev").symlink_to(victim)
    new = tmp_path / "new.toml"
    new.write_text(TOML.replace("100000", "200000"))
    done = aios(home, "apply", str(new))
    assert done.returncode == 0, done.stderr
    assert not (home / "aios.toml.prev").is_symlink() and "100000" in (home / "aios.toml.prev").read_text()
    (home / "aios.toml.lock").unlink(missing_ok=True)
    (home / "aios.toml.lock").symlink_to(victim)
    locked = aios(home, "apply", str(new))
    assert locked.returncode == 1 and locked.stderr.count("\n") == 1
    assert f"cannot open the edit lock: {home}/aios.toml.lock is a symbolic link" in locked.stderr
    assert daemon.terminate() == 0


def test_the_backup_example_refuses_a_linked_folder_and_keeps_copies_private(home, victim):
    write_home(home, TOML + """
[jobs.backup]
type = "trigger"
program = "backup.py:main"
""", {"backup.py": (ROOT / "aios" / "programs" / "backup.py").read_text()})
    daemon = started(home)
    (home / "backups").symlink_to(victim.parent)
    result = control.call(home, "wait", trigger=control.call(home, "trigger", job="backup"))
    assert result["exit_code"] == 1
    assert "is a link or not a folder" in (home / "logs" / "backup.log").read_text()
    (home / "backups").unlink()
    result = control.call(home, "wait", trigger=control.call(home, "trigger", job="backup"))
    assert result["exit_code"] == 0
    assert oct((home / "backups").stat().st_mode & 0o777) == "0o700"
    assert {oct(p.stat().st_mode & 0o777) for p in (home / "backups").iterdir()} == {"0o600"}
    assert daemon.terminate() == 0


def test_a_home_others_may_write_is_refused_in_one_line(home):
    write_home(home, TOML)
    os.chmod(home, 0o777)
    assert refused(home) == (f"aios: AIOS home {home} has mode 0777: others may write into it (and replace "
                             f"aios.toml or plant links): chmod go-w {home}")
    assert not (home / "orchestrator.db").exists(), "nothing is touched before the refusal"


def test_a_home_or_database_of_another_user_is_refused_in_one_line(home):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown to nobody (runs in CI, which is root)")
    write_home(home, TOML)
    os.chown(home, NOBODY, NOBODY)
    assert refused(home).startswith(f"aios: AIOS home {home} belongs to nobody (uid {NOBODY}), not to this "
                                    "daemon's user root (uid 0): run the daemon as nobody")
    os.chown(home, 0, 0)
    assert started(home).terminate() == 0
    os.chown(home / "orchestrator.db", NOBODY, NOBODY)
    assert refused(home).startswith(f"aios: state database {home}/orchestrator.db belongs to nobody "
                                    f"(uid {NOBODY}), not to root (uid 0), who runs AIOS here")
    os.chown(home / "orchestrator.db", 0, 0)
    os.chmod(home / "orchestrator.db", 0o622)
    assert refused(home) == (f"aios: state database {home}/orchestrator.db has mode 0622: others may write it: "
                             f"chmod go-w {home}/orchestrator.db")


def test_an_edited_cache_runs_no_command_aios_toml_does_not_name(home, tmp_path):
    write_home(home, TOML)
    assert started(home).terminate() == 0
    marker = tmp_path / "pwned"
    forged = {"key": None, "deps": {}, "errors": [], "invalid": {}, "cwd": {}, "code": None, "programs": {},
              "tables": {"pwned": {"type": "always", "command": ["touch", str(marker)]}},
              "settings": {"device_id": "x", "tags": []}}
    (home / ".aios.toml.cache").write_text(json.dumps(forged))
    daemon = started(home)
    wait_until(lambda: status(home)["svc"]["status"] == "running", what="svc running")
    assert sorted(status(home)) == ["other", "svc"] and not marker.exists()
    assert daemon.terminate() == 0
