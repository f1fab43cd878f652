"""Security promises against real daemons:

- no trigger argument ever reaches a shell (program, command and shell = true jobs; over
  the socket, from the CLI and as rows in the triggers table);
- a Programs path cannot escape Programs/ (the config refuses it; the runner refuses a
  file swapped for a symlink after the check);
- files the daemon creates are not world-writable (and which are readable by whom);
- the dashboard gives nothing to another local user: no secret in its page, a token file
  only its owner reads, every read and change refused without a credential (as uid
  nobody, with forged headers), wrong guesses throttled.

The socket refusing another uid is proved by
tests/integration/test_control.py::test_another_user_is_refused_by_the_file_and_by_the_daemon.
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aios import control
from tests.integration.conftest import ROOT, DaemonProcess, processes_with_home, wait_until, write_home

RUNNER = ROOT / "aios" / "runner.py"


def payloads(marker: Path) -> list[str]:
    """Arguments that would create a file named marker-N if any shell interpreted them."""
    return [f"$(touch {marker}-1)", f"`touch {marker}-2`", f"; touch {marker}-3", f"&& touch {marker}-4",
            f"| touch {marker}-5", f"\ntouch {marker}-6", f"' ; touch {marker}-7 ; '", f'" ; touch {marker}-8 ; "',
            f"$(IFS=_;cmd=touch_{marker}-9;$cmd)", f"> {marker}-10", "*", "~", "$HOME", "${PATH}"]


def test_no_trigger_argument_reaches_a_shell(home):
    write_home(home, """
[jobs.prog]
type = "trigger"
program = "echo.py:main"
max_parallel = 4

[jobs.cmd]
type = "trigger"
command = ["printf", "[%s]\\\\n"]
max_parallel = 4

[jobs.sh]
type = "trigger"
shell = true
command = 'echo $1 $2 $3 $4 $5 $6 $7 $8 $9 >> "$AIOS_HOME/sh.txt"; printf "[%s]\\\\n" "$@"'
max_parallel = 4
""", {"echo.py": """
    import json, os

    def main(*args, **kwargs):
        with open(os.path.join(os.environ["AIOS_HOME"], "prog.jsonl"), "a") as f:
            f.write(json.dumps({"args": list(args), "kwargs": kwargs}) + "\\n")
"""})
    marker = home / "pwned"
    args = payloads(marker)
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    ids = [control.call(home, "trigger", job=job, args=args) for job in ("prog", "cmd", "sh")]
    ids.append(control.call(home, "trigger", job="prog", args=[], kwargs={"k": args[0], args[1]: args[2]}))
    for job in ("cmd", "sh"):   # the CLI passes its arguments through no shell either
        done = subprocess.run([sys.executable, "-m", "aios", "--home", str(home), "trigger", job, "--", *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        ids.append(int(done.stdout))
    with sqlite3.connect(home / "orchestrator.db") as db:   # and neither do rows other programs insert
        for job in ("prog", "cmd", "sh"):
            ids.append(db.execute("INSERT INTO triggers (job, args) VALUES (?, ?)", (job, json.dumps(args))).lastrowid)
    for trigger_id in ids:
        assert control.call(home, "wait", trigger=trigger_id)["outcome"] == "ok"
    assert sorted(p.name for p in home.iterdir() if p.name.startswith("pwned")) == []
    calls = [json.loads(line) for line in (home / "prog.jsonl").read_text().splitlines()]
    assert calls.count({"args": args, "kwargs": {}}) == 2
    assert {"args": [], "kwargs": {"k": args[0], args[1]: args[2]}} in calls
    for job in ("cmd", "sh"):
        assert (home / "logs" / f"{job}.log").read_text() == "".join(f"[{a}]\n" for a in args) * 3
    assert daemon.terminate() == 0


def test_the_runner_refuses_a_program_swapped_for_a_symlink_out_of_programs(home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "swap.py").write_text(f"def main():\n    open({str(outside / 'ran')!r}, 'w').close()\n")
    write_home(home, """
[jobs.swap]
type = "trigger"
program = "swap.py:main"
""", {"swap.py": "def main():\n    pass\n"})
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    (home / "Programs" / "swap.py").unlink()
    (home / "Programs" / "swap.py").symlink_to(outside / "swap.py")   # after the config was checked
    result = control.call(home, "wait", trigger=control.call(home, "trigger", job="swap"))
    assert (result["outcome"], result["exit_code"]) == ("failed", 2)
    assert not (outside / "ran").exists()
    programs = home / "Programs"
    assert (home / "logs" / "swap.log").read_text() == (
        f"aios runner: 'swap.py' is outside {programs}; programs must live in that folder\n")
    assert control.call(home, "apply")["errors"] == [   # and the config check refuses it from now on
        f"job 'swap': program 'swap.py:main': Programs/swap.py resolves to {outside / 'swap.py'}, outside "
        "Programs/; put the program file itself inside Programs/"]
    assert daemon.terminate() == 0


@pytest.mark.parametrize("target, error", [
    ("../x.py:main", "aios runner: '../x.py' is outside {programs}; programs must live in that folder"),
    ("sub/../../x.py:main", "aios runner: 'sub/../../x.py' is outside {programs}; programs must live in that folder"),
    ("/etc/x.py:main", "aios runner: '/etc/x.py' must be a path relative to {programs}"),
    ("link.py:main", "aios runner: 'link.py' is outside {programs}; programs must live in that folder"),
])
def test_the_runner_refuses_paths_out_of_programs(tmp_path, target, error):
    programs = tmp_path / "Programs"
    programs.mkdir()
    (tmp_path / "x.py").write_text(f"def main():\n    open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    (programs / "link.py").symlink_to(tmp_path / "x.py")
    done = subprocess.run([sys.executable, str(RUNNER), str(programs), target, '{"args": [], "kwargs": {}}'],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (2, error.format(programs=programs) + "\n")
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------- file modes

PRIVATE = ("orchestrator.db", "orchestrator.db-wal", "orchestrator.db-shm", "aios.sock", "aios.pid",
           "logs/svc.log", "logs/svc.log.1", ".aios.toml.cache")
WRITTEN_BY_CONFIG_AND_CLI = ("aios.toml", "Programs/web_server.py", "orchestrator.log")


def daemon_files(tmp_path, umask: int) -> dict[str, int]:
    """Start a daemon the way a user does (`aios up -d` on a new home, which writes the
    default aios.toml and Programs/; our jobs then replace the example ones), make it
    rotate a log, and return the mode of every file and folder it created."""
    home = tmp_path / "home"
    script = f"""
import os, subprocess, sys, time
os.umask({umask:#o})
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from aios import config
config.write_default(Path({str(home)!r}))
with open({str(home / 'aios.toml')!r}, 'w') as f:
    f.write('[logs]\\nmax_size = "1KB"\\nkeep = 1\\n[jobs.svc]\\ntype = "always"\\n'
            'command = ["sh", "-c", "while :; do echo 0123456789012345678901234567890123456789; sleep 0.01; done"]\\n')
subprocess.run([sys.executable, "-m", "aios", "--home", {str(home)!r}, "up", "-d"], check=True, cwd={str(ROOT)!r})
"""
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=60)
    try:
        wait_until(lambda: (home / "logs" / "svc.log.1").exists(), what="a rotated log")
        modes = {str(p.relative_to(home)): stat.S_IMODE(os.lstat(p).st_mode) for p in [home, *home.rglob("*")]}
    finally:
        subprocess.run([sys.executable, "-m", "aios", "--home", str(home), "down"], cwd=ROOT, capture_output=True,
                       timeout=60)
        assert processes_with_home(home) == []
    return modes


def show_modes(modes: dict[str, int]) -> str:
    return ", ".join(f"{name} {mode:04o}" for name, mode in sorted(modes.items()))


def test_nothing_the_daemon_creates_is_world_writable(tmp_path):
    modes = daemon_files(tmp_path, 0o022)
    print(f"\n[security figures] modes under umask 022: {show_modes(modes)}")
    assert [name for name, mode in modes.items() if mode & 0o002] == []
    for name in PRIVATE:
        shared = name.startswith("logs/") or name == "aios.sock"    # with the home's group, if any (below)
        assert modes.get(name, 0o600) & (0o007 if shared else 0o077) == 0, f"{name} {modes[name]:04o}"
    assert modes["."] == 0o750 and modes["logs/svc.log"] == 0o640
    assert modes["aios.pid"] == modes["orchestrator.db"] == 0o600
    if os.geteuid() == 0:   # a first start as root shares the home with its dashboard's group (aios.scaffold)
        assert modes["logs"] == 0o2750 and modes["aios.sock"] == 0o660
    else:
        assert modes["logs"] == 0o750 and modes["aios.sock"] == 0o600


def test_under_umask_000_the_daemons_own_files_stay_private(tmp_path):
    """The state, the socket, the pid file and the logs have explicit modes, whatever the
    umask the daemon was started with."""
    modes = daemon_files(tmp_path, 0)
    print(f"\n[security figures] modes under umask 000: {show_modes(modes)}")
    for name in PRIVATE:
        if name in modes:
            assert not modes[name] & 0o002, f"{name} {modes[name]:04o}"
    assert modes["."] & 0o007 == 0 and modes["Programs"] & 0o007 == 0, "others cannot even reach the files"
    for name in WRITTEN_BY_CONFIG_AND_CLI:
        assert not modes[name] & 0o002, f"{name} {modes[name]:04o}"


# ---------------------------------------------------------------- the dashboard

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(port: int, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read() or b"{}")
    finally:
        conn.close()


def serving(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False


def dashboard(home, extra: str = "") -> tuple[DaemonProcess, int]:
    port = free_port()
    write_home(home, f'[web]\nport = {port}\n' + extra + """
[jobs.svc]
type = "always"
command = ["sleep", "100000"]

[jobs.web_server]
type = "always"
program = "web_server.py:main"
""", {"web_server.py": (ROOT / "aios" / "programs" / "web_server.py").read_text()})
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    wait_until(lambda: serving(port), what="the dashboard")
    return daemon, port


def svc_pid(home) -> int | None:
    return control.call(home, "status", job="svc")[0]["pid"]


def test_the_dashboard_refuses_a_change_without_its_credential(home):
    daemon, port = dashboard(home)
    token = (home / "dashboard.token").read_text().strip()
    assert stat.S_IMODE(os.lstat(home / "dashboard.token").st_mode) == 0o600
    pid = wait_until(lambda: svc_pid(home))
    page = {"Origin": f"http://127.0.0.1:{port}", "X-CSRF-Token": "guess"}
    for headers in ({}, page, {"Authorization": "Bearer wrong"}, {**page, "Cookie": f"aios_session_{port}=x.1.y"}):
        status, reply = post(port, "/api/restart", {"job": "svc"}, headers)
        assert (status, reply["ok"]) == (401, False), (headers, status, reply)
    status, _ = post(port, "/api/login", {"token": token}, page)
    assert status == 200
    assert svc_pid(home) == pid
    assert post(port, "/api/restart", {"job": "svc"}, {"Authorization": f"Bearer {token}"})[0] == 200
    wait_until(lambda: svc_pid(home) not in (None, pid), what="the restart the token allowed")
    assert daemon.terminate() == 0


ATTACK = r"""
import http.client, json, socket, sys
port, home = int(sys.argv[1]), sys.argv[2]
seen = {}

def ask(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body, headers or {})
    reply = conn.getresponse()
    data = reply.read().decode(errors="replace")
    conn.close()
    return reply.status, data

code, page = ask("GET", "/")
seen["page"] = [code, "csrf" in page.lower()]
try:
    seen["token file"] = open(home + "/dashboard.token").read()
except OSError as exc:
    seen["token file"] = type(exc).__name__
for path in ("/api/session", "/api/job?job=svc", "/api/stream", "/api/status", "/metrics"):
    seen[path] = ask("GET", path)[0]
forged = {"Content-Type": "application/json", "Host": "127.0.0.1:%d" % port,
          "Origin": "http://127.0.0.1:%d" % port, "X-CSRF-Token": "guessed"}
apply = json.dumps({"text": '[jobs.pwned]\ntype = "always"\ncommand = ["touch", "%s/pwned"]\n' % home})
seen["apply"] = ask("POST", "/api/apply", apply, forged)
seen["apply with a bearer guess"] = ask("POST", "/api/apply", apply, {**forged, "Authorization": "Bearer guess"})[0]
seen["logins"] = [ask("POST", "/api/login", json.dumps({"token": "guess-%d" % n}), forged)[0] for n in range(15)]
sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect(home + "/aios.sock")
    sock.sendall(b'{"op": "status"}\n')
    seen["socket"] = sock.recv(4096).decode()
except OSError as exc:
    seen["socket"] = type(exc).__name__
print(json.dumps(seen))
"""


def as_nobody(*argv: str) -> str:
    """Run a Python script as uid/gid 65534 (nobody), the way another local user would;
    the system's interpreter, which any user can run."""
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    done = subprocess.run(["runuser", "-u", "nobody", "--", python, "-I", "-c", *argv], capture_output=True,
                          text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def root():
    """Switching to another user needs root: CI runs as root, so there it must run."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the attack as uid nobody must run in CI, which runs as root; this run is not root")
        pytest.skip("needs root to act as uid nobody (runs in CI, which is root)")


def test_another_local_user_gets_nothing_from_the_dashboard_or_the_socket(root):
    """The attack of issue 11 as uid nobody against a root daemon: the page holds no
    secret, the token file cannot be read, every read and change is refused without a
    credential (a forged Origin and a guessed CSRF token included), guesses are
    throttled, and the socket refuses. The config is unchanged and no job ran."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        home = base / "home"
        daemon, port = dashboard(home, extra="")
        os.chmod(home, 0o711)               # nobody may pass through, as through a home in /home
        before = (home / "aios.toml").read_text()
        seen = json.loads(as_nobody(ATTACK, str(port), str(home)))
        print(f"\n[security figures] what uid nobody saw: {seen}")
        assert seen["page"] == [200, False]
        assert seen["token file"] == "PermissionError"
        for path in ("/api/session", "/api/job?job=svc", "/api/stream", "/api/status", "/metrics"):
            assert seen[path] == 401, path
        assert seen["apply"][0] == 401 and "log in first" in seen["apply"][1]
        assert seen["apply with a bearer guess"] == 401
        assert set(seen["logins"]) == {401, 429} and seen["logins"][-1] == 429
        assert seen["socket"] == "PermissionError"
        assert (home / "aios.toml").read_text() == before and not (home / "pwned").exists()
        assert [job["name"] for job in control.call(home, "status")] == ["svc", "web_server"]
        assert daemon.terminate() == 0
    finally:
        for started in DaemonProcess.started:    # a failed test leaves no daemon behind
            if started.home == base / "home" and started.proc.poll() is None:
                started.kill()
        for pid in processes_with_home(base / "home"):
            os.killpg(pid, 9)
        subprocess.run(["rm", "-rf", str(base)], check=False)
