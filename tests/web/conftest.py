"""A real daemon in a temp home and dashboards serving it: in this process (for the API
tests) or as the daemon's own web_server job (for the browser tests). HTTP helpers that
return status, headers and the decoded body, errors included; a logged-in session; the
headless Chromium of the browser tests (Playwright), failing in CI when missing."""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aios.web.server import Dashboard

from ..integration.conftest import home  # noqa: F401  (the fixture that kills what a failed test left)
from ..integration.conftest import LIVENESS, ROOT, DaemonProcess, processes_with_home, wait_until, write_home

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

[jobs.secretive]
type = "trigger"
command = ["true"]
env = { API_KEY = "hunter2-abc", MODE = "fast" }
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


TOKEN = "web-tests-4f9c1a7d2e8b"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


class Served:
    """A dashboard served from its own event loop in a thread of this process."""

    def __init__(self, home, token=TOKEN, host="127.0.0.1", port=0):
        self.app = Dashboard(home, token)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.run(self.app.start(host, port))
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, coroutine):
        """Run a coroutine in the dashboard's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(LIVENESS)

    def call(self, fn, *args):
        """Call fn in the dashboard's loop (its state belongs to that thread); its result."""
        async def called():
            return fn(*args)
        return self.run(called())

    def close(self) -> None:
        self.run(self.app.stop(self.server))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(LIVENESS)
        self.loop.close()


@pytest.fixture(scope="module")
def web(daemon):
    served = Served(daemon.home)
    wait_until(lambda: served.app.hub.about, what="the dashboard's watch connection")
    yield served
    served.close()


class Login:
    """A browser's session, as the page gets it: POST /api/login from its own origin."""

    def __init__(self, served: Served, token: str = TOKEN):
        self.served = served
        code, headers, reply = request(f"{served.url}/api/login", "POST", {"token": token}, {"Origin": served.url})
        assert code == 200, reply
        self.set_cookie = headers["Set-Cookie"]
        self.cookie = self.set_cookie.split(";")[0]
        self.csrf = reply["result"]["csrf"]

    def get(self, path: str, **headers):
        return request(f"{self.served.url}{path}", headers={"Cookie": self.cookie, **headers})

    def post(self, op: str, body, **headers):
        """A POST as the dashboard's own page sends it: cookie, same origin, CSRF token."""
        sent = {"Cookie": self.cookie, "Origin": self.served.url, "X-CSRF-Token": self.csrf, **headers}
        return request(f"{self.served.url}/api/{op}", "POST", body, {k: v for k, v in sent.items() if v is not None})


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


def printed_link(home) -> str:
    """The login link, as `aios dashboard` prints it for the user."""
    done = subprocess.run([sys.executable, "-m", "aios", "--home", str(home), "dashboard"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return done.stdout.strip()


def get(served: Served, path: str, **headers):
    """A GET with the token in the Authorization header, as a script sends it."""
    return request(f"{served.url}{path}", headers={**BEARER, **headers})


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


# ---------------------------------------------------------------- the browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = LIVENESS * 1000
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 360, "height": 740}


def missing() -> list[str]:
    found = []
    if not os.access(CHROMIUM, os.X_OK):
        found.append("Chromium at /usr/bin/chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        found.append("Playwright for Python (pip install playwright)")
    return found


@pytest.fixture(scope="module")
def browser():
    lacking = missing()
    if lacking:
        message = f"the browser tests need {' and '.join(lacking)}; ./run-tests installs both"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Pages:
    """Browser pages, each in a context of its own, logged in through a login link; their
    script errors and Content-Security-Policy violations are collected in `errors`."""

    def __init__(self, browser):
        self.browser, self.contexts, self.errors = browser, [], []

    def open(self, login: str, viewport: dict = DESKTOP, bypass_csp: bool = False):
        context = self.browser.new_context(viewport=viewport, bypass_csp=bypass_csp)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: self.errors.append(error))
        page.on("console", lambda message: "Content Security Policy" in message.text
                and self.errors.append(message.text))
        page.goto(login)                        # logs in, then shows the jobs
        page.wait_for_selector("#live.live-live")
        assert "token" not in page.url, "the token leaves the address bar at once"
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(browser):
    """Pages; an error on any of them fails the test at the end."""
    made = Pages(browser)
    yield made
    made.close()
    assert not made.errors, made.errors


def healthy(url: str) -> bool:
    """The dashboard at `url` answers /healthz."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def wait_js(page, expression: str, arg=None, what: str = "the page"):
    """Poll a JavaScript function of the page from here: Playwright's own wait_for_function
    evaluates a string inside the page, which the dashboard's CSP (rightly) forbids."""
    return wait_until(lambda: page.evaluate(expression, arg), what=what)
