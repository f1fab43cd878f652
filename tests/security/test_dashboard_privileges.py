"""Jobs' privileges under a root daemon, on a real one (we are root in CI): a first start as
root runs the dashboard as a uid no account has, which reaches the home only through the
descriptor the daemon gives it and only what the home's group may (its program, the
jobs' logs, the socket), never the database, the token file or aios.toml; the socket
admits that uid and no other; `aios status` marks the jobs a root daemon runs as root
only because no user is set."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from aios import config, control, launch, supervisor
from aios.home import dashboard_token
from tests.integration.conftest import LIVENESS, ROOT, DaemonProcess, processes_with_home, wait_until
from tests.processes import NOBODY
from tests.web.conftest import free_port


@pytest.fixture
def private_home():
    """A home inside a 0700 folder, as root's ~/.aios is inside /root."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the root daemon's privileges must be tested in CI, which runs as root")
        pytest.skip("needs a root daemon (runs in CI, which is root)")
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    os.chmod(base, 0o700)
    home = base / "home"
    home.mkdir(mode=0o750)
    try:
        yield home
    finally:
        for daemon in DaemonProcess.started:
            if daemon.home == home and daemon.proc.poll() is None:
                daemon.kill()
        for pid in processes_with_home(home):
            os.killpg(pid, 9)
        shutil.rmtree(base, ignore_errors=True)


def first_start_as_root(home: Path, port: int) -> DaemonProcess:
    config.write_default(home)            # what the daemon's first start writes, as root
    path = home / "aios.toml"
    path.write_text(f"[web]\nport = {port}\n" + path.read_text())
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    return daemon


def ids(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split() for k, v in (line.split(":", 1) for line in f) if k in ("Uid", "Gid", "Groups")}


def get(port: int, path: str, token: str):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    return urllib.request.urlopen(request, timeout=LIVENESS)


def as_uid(home: Path, uid: int, script: str, groups: tuple = ()) -> str:
    """What `sh -c script` prints run as uid (gid the same number), handed the home as fd 3."""
    log = home.parent / f"as-{uid}.out"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        proc = supervisor.spawn(["sh", "-c", script], {"PATH": os.environ["PATH"]}, launch.HOME_BY_FD, fd,
                                uid=uid, gid=uid, groups=groups, folder=str(home))
    finally:
        os.close(fd)
    wait_until(lambda: supervisor.reap(proc) is not None, what="the script")
    return log.read_text()


def test_a_first_start_as_root_runs_the_dashboard_as_a_uid_of_its_own(private_home):
    home, port = private_home, free_port()
    daemon = first_start_as_root(home, port)
    dashboard = launch.dashboard_id(home)
    tables = config.load(home).tables
    assert tables["web_server"]["user"] == str(dashboard) and tables["web_server"]["control"] is True
    assert {tables[name].get("user") for name in tables if name != "web_server"} == {"root"}
    jobs = wait_until(lambda: [j for j in control.call(home, "status") if j["name"] == "web_server"
                               and j["status"] == "running" and j["uptime"] and j["uptime"] > 0.5], what="dashboard")
    assert ids(jobs[0]["pid"]) == {"Uid": [str(dashboard)] * 4, "Gid": [str(dashboard)] * 4, "Groups": []}

    token = dashboard_token(home)        # as `aios dashboard` gets it for the link it prints
    wait_until(lambda: _answers(port, token), what="the dashboard answering")
    names = [job["name"] for job in json.load(get(port, "/api/status", token))["result"]]
    assert "web_server" in names and "backup" in names
    backup_log = home / "logs" / "backup.log"
    wait_until(lambda: backup_log.exists() and "backup:" in backup_log.read_text(),
               what="the backup example's first run")
    stream = get(port, "/api/log?job=backup&lines=5", token)
    first = b"".join(stream.readline() for _ in range(4)).decode()
    assert "backup:" in first, first                       # it reads the jobs' logs, as its group

    seen = as_uid(home, dashboard, "for f in orchestrator.db dashboard.token aios.toml .aios.toml.cache "
                                   "logs/backup.log Programs/web_server.py; do cat $f >/dev/null 2>&1 && echo $f; done")
    assert seen.split() == ["logs/backup.log", "Programs/web_server.py"]
    assert daemon.terminate() == 0


def on_a_terminal(home: Path, *argv: str) -> str:
    """What `aios ARGV` prints when its output is a terminal (a pseudo-terminal here)."""
    import pty

    main, side = pty.openpty()
    done = subprocess.run([sys.executable, "-m", "aios", "--home", str(home), *argv], stdout=side,
                          stderr=subprocess.PIPE, cwd=ROOT, timeout=LIVENESS)
    os.close(side)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:       # EIO: the terminal's other side is closed and drained
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert done.returncode == 0, done.stderr
    return b"".join(chunks).decode().replace("\r\n", "\n")


def _answers(port: int, token: str) -> bool:
    try:
        return get(port, "/api/ping", token).status == 200
    except OSError:
        return False


def test_the_socket_admits_the_dashboards_uid_and_not_another_that_reaches_it(private_home):
    home, port = private_home, free_port()
    daemon = first_start_as_root(home, port)
    dashboard = launch.dashboard_id(home)
    sock = (home / "aios.sock").stat()
    assert oct(sock.st_mode & 0o777) == "0o660" and sock.st_gid == dashboard
    ask = f"{sys.executable} -c \"import sys; sys.path.append('{ROOT}'); from aios import control; " \
          "print(control.call('/proc/self/fd/3', 'ping')['pid'])\" 2>&1 | tail -1"
    assert as_uid(home, dashboard, ask).strip() == str(daemon.pid)
    listen = f"{sys.executable} -c \"import socket; s = socket.socket(socket.AF_UNIX); " \
             "s.connect('/proc/self/fd/3/aios.sock'); print(s.recv(4096).decode())\" 2>&1"
    other = as_uid(home, NOBODY, listen, groups=(dashboard,))     # reaches the socket through the group
    assert json.loads(other) == {"ok": False, "error": f"permission denied: uid {NOBODY} is not the daemon's "
                                                        "owner (0) or root"}
    assert daemon.terminate() == 0


def test_status_marks_jobs_a_root_daemon_runs_as_root_only_because_no_user_is_set(private_home):
    home, port = private_home, free_port()
    daemon = first_start_as_root(home, port)
    new = home.parent / "new.toml"
    new.write_text((home / "aios.toml").read_text()
                   + '\n[jobs.plain]\ntype = "always"\ncommand = ["sleep", "100000"]\n')
    done = subprocess.run([sys.executable, "-m", "aios", "--home", str(home), "apply", str(new)],
                          capture_output=True, text=True, cwd=ROOT, timeout=LIVENESS)
    assert done.returncode == 0, done.stderr
    jobs = {job["name"]: job for job in control.call(home, "status")}
    assert jobs["plain"]["root_warning"].startswith("runs as root because no user is set")
    assert all(job["root_warning"] is None for name, job in jobs.items() if name != "plain")
    shown = subprocess.run([sys.executable, "-m", "aios", "--home", str(home), "status"], capture_output=True,
                           text=True, cwd=ROOT, timeout=LIVENESS)
    marked = [line.split()[0] for line in shown.stdout.splitlines()[1:] if line.split()[1:2] == ["!"]]
    assert marked == ["plain"] and shown.stderr == ""
    assert on_a_terminal(home, "status").splitlines()[-1].endswith(
        '! runs as root because no user is set: set user = "NAME" if it needs no root '
        '(user = "root" if it does)\x1b[0m')
    assert daemon.terminate() == 0
