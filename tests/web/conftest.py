"""A real daemon in a temp home and dashboards serving it: in this process (for the API
tests) or as the daemon's own web_server job (for the browser tests). HTTP helpers that
return status, headers and the decoded body, errors included."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aios.web.server import make_server

from ..integration.conftest import LIVENESS, DaemonProcess, processes_with_home, wait_until, write_home

WEB_SERVER = Path(__file__).resolve().parents[2] / "aios" / "programs" / "web_server.py"

PROGRAMS = {
    "work.py": """
        def main(*args, **kwargs):
            print("work got", list(args), kwargs, flush=True)
    """,
    "hostile.py": """
        import time

        def main():
            print("<script>window.__pwned = 1</script>", flush=True)
            print('<img src=x onerror="window.__pwned = 2">', flush=True)
            while True:
                time.sleep(3600)
    """,
}

JOBS = """
[jobs.sleeper]
type = "always"
command = ["sleep", "100000"]
tags = ["demo"]

[jobs.work]
type = "trigger"
program = "work.py:main"

[jobs.hostile]
type = "always"
program = "hostile.py:main"

[jobs.gpu_only]
type = "always"
command = ["sleep", "100000"]
tags = ["gpu"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daemon(home: Path, toml: str, programs: dict | None = None) -> DaemonProcess:
    write_home(home, toml, {**PROGRAMS, **(programs or {})})
    shutil.copy(WEB_SERVER, home / "Programs" / "web_server.py")
    daemon = DaemonProcess(home, env={"DEVICE_TAGS": "demo"})
    DaemonProcess.started.remove(daemon)   # it outlives tests; the `home` fixture kills what is listed
    try:
        daemon.wait_ready()
    except BaseException:
        stop_daemon(daemon)
        raise
    return daemon


def stop_daemon(daemon: DaemonProcess) -> None:
    if daemon.proc.poll() is None:
        daemon.terminate()
    for pid in processes_with_home(daemon.home):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("web") / "home", JOBS)
    yield daemon
    stop_daemon(daemon)


class Served:
    """A dashboard served from a thread of this process."""

    def __init__(self, home, token=None, host="127.0.0.1"):
        self.server = make_server(home, host, 0, token)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.app = self.server.app
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def web(daemon):
    served = Served(daemon.home)
    wait_until(lambda: served.app.hub.about, what="the dashboard's watch connection")
    yield served
    served.close()


def request(url: str, method: str = "GET", body=None, headers: dict | None = None):
    """(status, headers, body as JSON or text) of one request, error statuses included."""
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if body is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=LIVENESS) as reply:
            return reply.status, reply.headers, _decode(reply.headers, reply.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, _decode(err.headers, err.read())


def _decode(headers, data: bytes):
    return json.loads(data) if headers.get("Content-Type") == "application/json" else data.decode()


def page_post(served: Served, op: str, body, **headers):
    """A POST as the dashboard's own page sends it: same origin, CSRF token."""
    sent = {"Origin": served.url, "X-CSRF-Token": served.app.guard.csrf, **headers}
    return request(f"{served.url}/api/{op}", "POST", body, sent)


class EventStream:
    """A Server-Sent Events stream read line by line: next() -> (event name, data)."""

    def __init__(self, url: str, path: str, headers: dict | None = None):
        host, port = url.split("//", 1)[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=LIVENESS)
        self.conn.request("GET", path, headers=headers or {})
        self.response = self.conn.getresponse()

    def next(self):
        kind = data = None
        while True:
            line = self.response.fp.readline()
            if not line:
                raise EOFError("the stream ended")
            line = line.decode().rstrip("\n")
            if not line and kind:
                return kind, json.loads(data)
            if line.startswith("event: "):
                kind = line[len("event: "):]
            elif line.startswith("data: "):
                data = line[len("data: "):]

    def until(self, predicate, what: str):
        """The first message for which predicate(kind, data) holds (liveness: the socket
        timeout ends a stream that stays silent)."""
        seen = []
        while True:
            try:
                kind, data = self.next()
            except (OSError, EOFError) as exc:
                raise AssertionError(f"no {what} on the stream ({exc}); saw {seen[-5:]}") from None
            seen.append((kind, data))
            if predicate(kind, data):
                return kind, data

    def close(self) -> None:
        self.response.close()    # holds the socket open too
        self.conn.close()
