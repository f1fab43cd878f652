"""The dashboard's HTTP server (standard library, one thread per request) and its start-up.

`main()` serves the dashboard of AIOS_HOME on [web] host and port (AIOS_WEB_HOST and
AIOS_WEB_PORT, which every job finds, win) with [web] token; it is what the default
always job web_server and `python3 -m aios.web` run. Every response carries the security
headers of aios.web.security; GET never changes anything.
"""
from __future__ import annotations

import html
import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from .. import config
from ..errors import AiosError
from ..home import find_home
from . import api, logtail, security, sse
from .security import Refused

STATIC = Path(__file__).with_name("static")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class Dashboard:
    """What every request needs: the home, the rules, the hub and the static files."""

    def __init__(self, home, host: str, token: str | None):
        self.home = str(home)
        self.guard = security.Guard(host, token)
        self.hub = sse.Hub(self.home)
        self.files = {"/" + p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in TYPES}
        self.files["/"] = render_index(self.files.pop("/index.html"), self.guard.csrf)


def render_index(template: bytes, csrf: str) -> bytes:
    """index.html with the CSRF token in its <meta name="csrf-token"> (escaped, though a
    urlsafe token never needs it)."""
    return template.replace(b"{{csrf}}", html.escape(csrf, quote=True).encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, app: Dashboard):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(address, Handler)

    def server_close(self) -> None:
        self.app.hub.close()
        super().server_close()


def make_server(home, host: str, port: int, token: str | None) -> Server:
    """A bound server with its hub running; call serve_forever(), then server_close()."""
    security.check_exposure(host, token)
    server = Server((host, port), Dashboard(home, host, token))
    server.app.hub.start()
    return server


class Handler(BaseHTTPRequestHandler):
    server_version = "aios-web"
    sys_version = ""

    @property
    def app(self) -> Dashboard:
        return self.server.app

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, action) -> None:
        try:
            self.app.guard.check_host(self.headers)
            action(urlsplit(self.path))
        except Refused as exc:
            self.send_json(exc.code, {"ok": False, "error": exc.message})
        except (BrokenPipeError, ConnectionResetError):
            pass    # the browser went away (a closed tab ends its streams this way)

    def _get(self, url) -> None:
        if not url.path.startswith("/api/"):
            return self._static(url.path)
        self.app.guard.check_read(self.headers)
        op = url.path[len("/api/"):]
        if op == "stream":
            return self._stream(lambda write: sse.stream_hub(self.app.hub, write, {"csrf": self.app.guard.csrf}))
        if op == "log":
            path, lines = api.log_request(self.app.home, url.query)
            return self._stream(lambda write: logtail.stream_log(path, lines, self.connection, write))
        if op not in api.READS:
            raise Refused(405 if op in api.WRITES else 404, _unknown(op, "GET"))
        self.send_json(*api.perform(self.app.home, op, api.query_fields(url.query, api.READS[op])))

    def _post(self, url) -> None:
        body = self._body()     # read even when refused: unread input would reset the connection
        op = url.path[len("/api/"):] if url.path.startswith("/api/") else ""
        if op != "login" and op not in api.WRITES:
            raise Refused(405 if op in api.READS else 404, _unknown(op, "POST"))
        if op == "login":
            cookie = self.app.guard.login(self.headers, self._fields(body).get("token"))
            return self.send_json(200, {"ok": True, "result": None}, [("Set-Cookie", cookie)])
        self.app.guard.check_write(self.headers)
        self.send_json(*api.perform(self.app.home, op, self._fields(body), self.app.hub))

    def _fields(self, body: bytes) -> dict:
        return api.body_fields(body, self.headers.get("Content-Type") or "")

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise Refused(400, "bad Content-Length") from None
        if length > api.MAX_BODY:
            raise Refused(413, f"request too large: over {api.MAX_BODY} bytes")
        return self.rfile.read(length) if length > 0 else b""

    def _static(self, path: str) -> None:
        if path == "/healthz":
            return self.send_bytes(200, "text/plain; charset=utf-8", b"ok")
        data = self.app.files.get(path)
        if data is None:
            raise Refused(404, f"no page {path[:80]!r}")
        kind = TYPES[".html"] if path == "/" else TYPES[Path(path).suffix]
        self.send_bytes(200, kind, data)

    def _stream(self, run) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

        def write(data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        try:
            run(write)
        except OSError:
            pass    # the browser left

    def send_json(self, code: int, body: dict, headers=()) -> None:
        data = json.dumps(body, separators=(",", ":"), default=str).encode()
        self.send_bytes(code, "application/json", data, headers)

    def send_bytes(self, code: int, kind: str, data: bytes, headers=()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store" if kind == "application/json" else "no-cache")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def end_headers(self) -> None:
        for name, value in security.HEADERS:
            self.send_header(name, value)
        super().end_headers()

    def log_request(self, code="-", size="-") -> None:
        if isinstance(code, int) and code >= 400:   # a job's log is no access log
            super().log_request(code, size)


def _unknown(op: str, method: str) -> str:
    ops = sorted(api.READS) if method == "GET" else sorted(api.WRITES)
    return f"{method} /api/{op[:40]}: not an op for {method}; {method} ops: {', '.join(ops)}"


def main() -> int:
    """Serve until SIGTERM (exit 0); a setting that cannot work prints one line, exit 2."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        home = find_home()
        settings = config.load(Path(home)).settings
        host = os.environ.get("AIOS_WEB_HOST") or settings.web_host
        port = int(os.environ.get("AIOS_WEB_PORT") or settings.web_port)
        server = _listen(home, host, port, settings.web_token)
    except (AiosError, security.ExposureError, ValueError) as exc:
        print(f"web_server: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"web_server: serving http://{_where(host, port)}/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("web_server: stopped", flush=True)
    return 0


def _listen(home, host: str, port: int, token: str | None) -> Server:
    try:
        return make_server(home, host, port, token)
    except OSError as exc:
        raise ValueError(f"cannot listen on {_where(host, port)}: {exc.strerror or exc}") from None


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
