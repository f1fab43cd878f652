"""The control protocol against a real daemon: every op, bad lines, other users."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from aios import control
from aios.control import MAX_LINE

from .conftest import DaemonProcess, pid_alive, wait_until, write_home

JOBS = """
[jobs.svc]
type = "always"
command = ["sleep", "100000"]

[jobs.tick]
type = "interval"
every = "1h"
command = ["true"]

[jobs.work]
type = "trigger"
command = ["sh", "-c", "exit $1", "work"]
"""


@pytest.fixture
def daemon(home):
    write_home(home, JOBS)
    proc = DaemonProcess(home)
    proc.wait_ready()
    yield proc
    if proc.proc.poll() is None:
        proc.terminate()


def raw(home: Path, *lines: bytes) -> list[dict]:
    """Send raw lines on one connection; return one decoded reply per line sent."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(home / "aios.sock"))
        sock.sendall(b"".join(lines))
        data = b""
        while data.count(b"\n") < len(lines):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_every_op(daemon, home):
    client = control.Client(home)
    about = client.call("ping")
    assert about["pid"] == daemon.pid and about["home"] == str(home) and about["jobs"] == 3
    names = [job["name"] for job in client.call("status")]
    assert names == ["svc", "tick", "work"]
    svc = wait_until(lambda: client.call("status", job="svc")[0]["pid"])
    client.call("restart", job="svc")
    assert wait_until(lambda: client.call("status", job="svc")[0]["pid"] not in (None, svc))
    client.call("stop", job="svc")
    assert wait_until(lambda: client.call("status", job="svc")[0]["status"] == "stopped")
    client.call("start", job="svc")
    assert wait_until(lambda: client.call("status", job="svc")[0]["status"] == "running")
    client.call("disable", job="tick")
    assert client.call("status", job="tick")[0]["status"] == "disabled"
    client.call("enable", job="tick")
    client.call("run", job="tick")
    trigger_id = client.call("trigger", job="work", args=["5"])
    assert client.call("wait", trigger=trigger_id) == {
        "trigger": trigger_id, "outcome": "failed", "run_id": client.call("history", job="work")[0]["id"],
        "exit_code": 5, "signal": None}
    assert client.call("wait", trigger=trigger_id)["exit_code"] == 5, "waiting on a done trigger answers at once"
    assert {r["job"] for r in client.call("history", limit=10)} >= {"svc", "tick", "work"}
    detail = client.call("job", job="work")
    assert detail["spec"] == {"type": "trigger", "command": ["sh", "-c", "exit $1", "work"]}
    assert detail["status"]["name"] == "work" and detail["log"] == str(home / "logs" / "work.log")
    about = client.call("about")
    assert about["pid"] == daemon.pid and about["rss_kib"] > 1000 and about["cpu_seconds"] >= 0
    assert client.call("events", job="work", limit=3)[0]["name"] in ("trigger_done", "job_exited")
    assert client.call("apply") == {"added": [], "removed": [], "changed": [], "unchanged": ["svc", "tick", "work"],
                                    "fields": {}, "kept": {}, "errors": []}
    client.close()


def test_watch_streams_events_as_they_happen(daemon, home):
    with control.Client(home) as watcher, control.Client(home) as actor:
        assert watcher.call("watch") == "watching"
        actor.call("trigger", job="work", args=["0"])
        seen = []
        while not any(e["name"] == "trigger_done" for e in seen):
            seen.append(watcher.receive()["event"])
    names = [e["name"] for e in seen if e["job"] == "work"]
    assert names.index("trigger_added") < names.index("job_started") < names.index("job_exited")
    assert any(e["name"] == "status" and e["message"].startswith("waiting -> running") for e in seen)


def test_errors_name_the_problem_and_keep_the_connection(daemon, home):
    replies = raw(home, b"not json\n", b"[1, 2]\n", b'{"no": "op"}\n', b'{"op": "frobnicate"}\n',
                  b'{"op": "start"}\n', b'{"op": "start", "job": 5}\n', b'{"op": "start", "job": "nope"}\n',
                  b'{"op": "trigger", "job": "svc"}\n', b'{"op": "trigger", "job": "work", "args": "x"}\n',
                  b'{"op": "history", "limit": true}\n', b'{"op": "wait", "trigger": 99999}\n',
                  b'{"op": "ping", "id": 7}\n')
    errors = [r.get("error") for r in replies]
    assert errors[0].startswith("malformed request: not JSON (")
    assert errors[1:4] == [
        'malformed request: expected a JSON object like {"op": "status"}',
        'malformed request: missing "op" (a string such as "status")',
        "unknown op 'frobnicate'; known ops: " + ", ".join(sorted({*control.COMMANDS, *control.DEFERRED,
                                                                 *control.STREAMING}))]
    assert errors[4:11] == [
        "op 'start': missing field 'job'",
        "op 'start': field 'job' must be a string",
        "no job named 'nope' (known: svc, tick, work)",
        "job 'svc' is an always job; it cannot be triggered (use restart)",
        "op 'trigger': field 'args' must be a list",
        "op 'history': field 'limit' must be an integer",
        "no trigger with id 99999"]
    assert replies[11]["ok"] and replies[11]["id"] == 7, "the connection survived every bad line"


def test_oversized_line_is_refused_and_the_daemon_stays_up(daemon, home):
    huge = b'{"op": "ping", "pad": "' + b"x" * (MAX_LINE + 10) + b'"}\n'
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(home / "aios.sock"))
        try:
            sock.sendall(huge)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may hang up before reading everything
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert json.loads(data.splitlines()[0]) == {
        "ok": False, "error": f"request too large: over {MAX_LINE} bytes in one line"}
    assert control.call(home, "ping")["pid"] == daemon.pid


def test_pipelined_requests_are_answered_in_order(daemon, home):
    lines = [json.dumps({"op": "ping", "id": i}).encode() + b"\n" for i in range(200)]
    replies = raw(home, *lines)
    assert [r["id"] for r in replies] == list(range(200))


def test_socket_is_private(daemon, home):
    mode = stat.S_IMODE(os.stat(home / "aios.sock").st_mode)
    assert mode == 0o600


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another uid")
def test_another_user_is_refused_by_the_file_and_by_the_daemon(tmp_path):
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(base, 0o711)
        home = write_home(base / "home", JOBS)
        os.chmod(home, 0o711)
        daemon = DaemonProcess(home)
        daemon.wait_ready()
        try:
            nobody = _as_nobody(home / "aios.sock")
            assert nobody == "connect refused: Permission denied"
            os.chmod(home / "aios.sock", 0o666)  # even then, the daemon itself refuses
            reply = json.loads(_as_nobody(home / "aios.sock"))
            assert reply == {"ok": False, "error": "permission denied: uid 65534 is not the daemon's owner (0) or root"}
            assert control.call(home, "ping")["pid"] == daemon.pid
        finally:
            daemon.terminate()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def _as_nobody(path: Path) -> str:
    """Connect as uid 65534 from a forked child (root's interpreter is not readable by
    nobody, so no exec): returns what the connection saw."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, try, report through the pipe; never return into pytest
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, _try_status(path).encode())
        except BaseException as exc:
            os.write(write_end, f"child failed: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        seen = pipe.read()
    os.waitpid(pid, 0)
    return seen


def _try_status(path: Path) -> str:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    try:
        sock.connect(str(path))
    except PermissionError as exc:
        return f"connect refused: {exc.strerror}"
    try:
        sock.sendall(b'{"op": "status"}\n')
    except OSError:
        pass  # the daemon may have refused and hung up before we sent: its line is still there
    return sock.recv(4096).decode().strip()


def test_shutdown_replies_then_everything_stops(daemon, home):
    with control.Client(home) as client:
        pid = client.call("status", job="svc")[0]["pid"] or wait_until(
            lambda: client.call("status", job="svc")[0]["pid"])
        assert client.call("shutdown") == {"pid": daemon.pid}
    assert daemon.proc.wait(30) == 0
    assert not pid_alive(pid)
    assert not (home / "aios.sock").exists()
    with pytest.raises(control.DaemonNotRunning):
        control.call(home, "ping")
