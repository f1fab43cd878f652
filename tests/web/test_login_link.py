"""The login link: `aios dashboard` prints it (and makes a new token), the foreground
start prints it on a terminal and never into a log file, and it opens the dashboard."""
from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys

from ..integration.conftest import LIVENESS, ROOT, DaemonProcess, wait_until, write_home
from .conftest import free_port, printed_link, request

LINK = re.compile(r"http://127\.0\.0\.1:(\d+)/#token=([A-Za-z0-9_-]{40,})")


def aios(home, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aios", "--home", str(home), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_the_link_of_a_home_without_a_daemon(tmp_path):
    home = write_home(tmp_path / "home", '[web]\nhost = "0.0.0.0"\nport = 9999\n')
    done = aios(home, "dashboard")
    assert done.returncode == 0
    token = (home / "dashboard.token").read_text().strip()
    assert done.stdout == f"http://127.0.0.1:9999/#token={token}\n"
    assert done.stderr == "aios: no daemon is running for this home: the dashboard opens once it is (aios up -d)\n"


def test_a_configured_token_is_checked_and_cannot_be_renewed_here(tmp_path):
    home = write_home(tmp_path / "home", '[web]\ntoken = "change-me"\n')
    done = aios(home, "dashboard")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("aios: [web] token is 9 characters; it needs at least 16")
    home = write_home(tmp_path / "other", '[web]\ntoken = "a-configured-token-42x"\n')
    assert aios(home, "dashboard").stdout == "http://127.0.0.1:8787/#token=a-configured-token-42x\n"
    done = aios(home, "dashboard", "--new-token")
    assert done.returncode == 2 and "change it there" in done.stderr


def test_a_new_token_ends_the_old_link(home):
    port = free_port()
    write_home(home, f"""
[web]
port = {port}

[jobs.web_server]
type = "always"
program = "web_server.py:main"
""", {"web_server.py": (ROOT / "aios" / "programs" / "web_server.py").read_text()})
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    old = printed_link(home)
    url = f"http://127.0.0.1:{port}"
    bearer = {"Authorization": f"Bearer {old.split('#token=')[1]}"}
    wait_until(lambda: _status(f"{url}/api/ping", bearer) == 200, what="the dashboard taking the old token")
    done = aios(home, "dashboard", "--new-token")
    assert done.returncode == 0 and done.stdout.startswith("aios: restarted web_server with the new token\n")
    new = done.stdout.splitlines()[-1]
    assert new != old and LINK.fullmatch(new)
    wait_until(lambda: _status(f"{url}/api/ping", {"Authorization": f"Bearer {new.split('#token=')[1]}"}) == 200,
               what="the restarted dashboard taking the new token")
    assert _status(f"{url}/api/ping", bearer) == 401
    assert daemon.terminate() == 0


def _status(url: str, headers: dict) -> int | None:
    try:
        return request(url, headers=headers)[0]
    except OSError:
        return None


def test_the_foreground_start_prints_the_link_on_a_terminal(tmp_path):
    """A new home, as a new user starts it: the first lines name the link; it works."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    (home / "aios.toml").write_text(f'[web]\nport = {port}\n\n[jobs.web_server]\ntype = "always"\n'
                                    'program = "web_server.py:main"\n')
    (home / "Programs").mkdir()
    (home / "Programs" / "web_server.py").write_text((ROOT / "aios" / "programs" / "web_server.py").read_text())
    main, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(ROOT / "simple_orchestrator.py")], stdout=terminal,
                            stderr=subprocess.DEVNULL, cwd=home, env={**os.environ, "AIOS_HOME": str(home)})
    os.close(terminal)
    try:
        seen = _read_until(main, LINK)
        link = LINK.search(seen)
        assert link and int(link[1]) == port and link[2] == (home / "dashboard.token").read_text().strip()
        bearer = {"Authorization": f"Bearer {link[2]}"}
        wait_until(lambda: _status(f"http://127.0.0.1:{port}/api/ping", bearer) == 200, what="the dashboard")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(LIVENESS)
        os.close(main)


def _read_until(fd: int, pattern) -> str:
    seen = ""
    while not pattern.search(seen):
        ready, _, _ = select.select([fd], [], [], LIVENESS)
        assert ready, f"nothing more on the terminal; saw {seen!r}"
        seen += os.read(fd, 4096).decode(errors="replace")
    return seen


def test_no_token_reaches_a_log_file(tmp_path):
    """`aios up -d` and a foreground start whose output is not a terminal print no link:
    orchestrator.log and the daemon's output hold no token."""
    home = write_home(tmp_path / "home", "[jobs.svc]\ntype = \"always\"\ncommand = [\"sleep\", \"100000\"]\n"
                      "\n[jobs.web_server]\ntype = \"always\"\nprogram = \"web_server.py:main\"\n"
                      f"\n[web]\nport = {free_port()}\n",
                      {"web_server.py": (ROOT / "aios" / "programs" / "web_server.py").read_text()})
    try:
        up = aios(home, "up", "-d")
        assert up.returncode == 0 and "#token=" not in up.stdout
        token = aios(home, "dashboard").stdout.split("#token=")[1].strip()
        wait_until(lambda: (home / "logs" / "web_server.log").exists())
        for log in (home / "orchestrator.log", home / "logs" / "web_server.log"):
            assert token not in log.read_text(), log
    finally:
        assert aios(home, "down").returncode == 0
