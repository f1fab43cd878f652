"""The dashboard's routes and its start-up: one asyncio event loop serves every request
(aios.web.http1 bounds the connections), the JSON API, the event streams and the pages.

`main()` serves the dashboard of AIOS_HOME on [web] host and port (AIOS_WEB_HOST and
AIOS_WEB_PORT, which every job finds, win), guarded by the home's dashboard token
(aios.home.dashboard_token: [web] token, else HOME/dashboard.token); it is what the
default always job web_server and `python3 -m aios.web` run. Under a root daemon it
runs as a user of its own and gets the home as a descriptor (`_settings`). Every response carries the
security headers of aios.web.security; GET never changes anything.
"""
from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from .. import config
from ..errors import AiosError
from ..home import dashboard_token, find_home
from . import api, http1, metrics, security
from .client import Daemon
from .logtail import Tails
from .security import BEARER, Refused
from .sse import Hub, stream_hub

STATIC = Path(__file__).with_name("static")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


class Dashboard:
    """What every request needs: the daemon, the rules, the hub, the tails, the pages."""

    def __init__(self, home, token: str):
        self.home = str(home)
        self.daemon = Daemon(self.home)
        self.guard = security.Guard(token)
        self.hub = Hub(self.daemon)
        self.tails = Tails()
        self.tally = metrics.RunTally()
        self.waits = 0
        self.files = {"/" + p.name: p.read_bytes() for p in STATIC.iterdir() if p.suffix in TYPES}
        self.files["/"] = self.files.pop("/index.html")

    async def handle(self, request: http1.Request, reply: http1.Reply) -> None:
        try:
            if request.method == "GET":
                await self._get(request, reply)
            elif request.method == "POST":
                await self._post(request, reply)
            else:
                raise Refused(405, f"method {request.method[:20]!r} not allowed; use GET or POST",
                              (("Allow", "GET, POST"),))
        except Refused as exc:
            if not reply.started:
                await reply.json(exc.code, {"ok": False, "error": exc.message}, exc.headers)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:   # a bug: answer all the same, then let it be seen
            if not reply.started:
                await reply.json(500, {"ok": False, "error": f"internal error ({type(exc).__name__})"})
            raise

    async def _get(self, request, reply) -> None:
        if request.path == "/metrics":
            self.guard.authenticate(request.headers, request.client)
            return await reply.send(200, metrics.CONTENT_TYPE, await metrics.scrape(self.daemon, self.tally))
        if not request.path.startswith("/api/"):
            return await self._static(request.path, reply)
        credential = self.guard.authenticate(request.headers, request.client)
        op = request.path[len("/api/"):]
        if op == "session":
            csrf = None if credential is BEARER else credential.csrf
            return await reply.json(200, {"ok": True, "result": {"csrf": csrf}})
        if op == "stream":
            first = {"csrf": None if credential is BEARER else credential.csrf}
            return await self._stream(reply, lambda write: stream_hub(self.hub, write, first))
        if op == "log":
            path, lines = await api.log_request(self.daemon, request.query)
            tail = self.tails.open(path)
            try:
                return await self._stream(reply, lambda write: tail.run(lines, write))
            finally:
                tail.close()
        if op not in api.READS:
            raise Refused(405 if op in api.WRITES else 404, _unknown(op, "GET"))
        fields = api.query_fields(request.query, api.READS[op])
        if op == "wait":
            return await self._wait(fields, reply)
        await reply.json(*await api.perform(self.daemon, op, fields))

    async def _wait(self, fields: dict, reply) -> None:
        if self.waits >= api.WAITS_MAX:
            raise Refused(503, f"{api.WAITS_MAX} waits are open already; try again when one is over")
        self.waits += 1
        try:
            await reply.json(*await api.perform(self.daemon, "wait", fields))
        finally:
            self.waits -= 1

    async def _post(self, request, reply) -> None:
        op = request.path[len("/api/"):] if request.path.startswith("/api/") else ""
        if op == "login":
            secure = security.through_tls(request.headers)
            fields = api.body_fields(request.body, request.headers.get("Content-Type") or "")
            session, cookie = self.guard.login(request.headers, request.client, fields.get("token"), secure)
            return await reply.json(200, {"ok": True, "result": {"csrf": session.csrf}}, (("Set-Cookie", cookie),))
        if op != "logout" and op not in api.WRITES:
            raise Refused(405 if op in api.READS else 404, _unknown(op, "POST"))
        credential = self.guard.authenticate(request.headers, request.client)
        self.guard.check_write(request.headers, credential)
        if op == "logout":
            return await reply.json(200, {"ok": True, "result": None}, (("Set-Cookie", self.guard.logout(credential)),))
        fields = api.body_fields(request.body, request.headers.get("Content-Type") or "")
        await reply.json(*await api.perform(self.daemon, op, fields, self.hub))

    async def _static(self, path: str, reply) -> None:
        if path == "/healthz":
            return await reply.send(200, "text/plain; charset=utf-8", b"ok")
        data = self.files.get(path)
        if data is None:
            raise Refused(404, f"no page {path[:80]!r}")
        await reply.send(200, TYPES[".html"] if path == "/" else TYPES[Path(path).suffix], data)

    @staticmethod
    async def _stream(reply, run) -> None:
        await reply.start_stream("text/event-stream")
        await run(reply.write)

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        """Listen and start the hub; stop() undoes both."""
        self.listener = http1.Listener(self.handle, security.HEADERS)
        server = await self.listener.start(host, port)
        self.guard.cookie = f"aios_session_{server.sockets[0].getsockname()[1]}"   # cookies ignore ports
        await self.hub.start()
        return server

    async def stop(self, server) -> None:
        await self.listener.close()
        await self.hub.close()
        self.tails.close()


def _unknown(op: str, method: str) -> str:
    ops = sorted(api.READS) if method == "GET" else sorted(api.WRITES)
    return f"{method} /api/{op[:40]}: not an op for {method}; {method} ops: {', '.join(ops)}"


def main() -> int:
    """Serve until SIGTERM or SIGINT (exit 0); a setting that cannot work prints one line, exit 2."""
    try:
        home, host, port, token = _settings()
    except (AiosError, OSError, ValueError) as exc:
        print(f"web_server: {exc}", file=sys.stderr, flush=True)
        return 2
    from ..control import raise_nofile_limit

    raise_nofile_limit()
    return asyncio.run(_serve(Dashboard(home, token), host, port))


def _settings() -> tuple[str, str, int, str]:
    """(home, host, port, token). Run by a root daemon as a user of its own (`control`
    job: AIOS_HOME_FD), the dashboard reaches the home through that descriptor, takes
    host and port from its environment and asks the daemon for the token (aios.toml and
    dashboard.token are root's); otherwise it reads them itself."""
    fd = os.environ.get("AIOS_HOME_FD")
    if fd:
        from .. import control

        home = f"/proc/self/fd/{int(fd)}"
        return home, os.environ["AIOS_WEB_HOST"], int(os.environ["AIOS_WEB_PORT"]), \
            control.call(home, "dashboard_token")
    home = find_home()
    settings = config.load(Path(home)).settings
    host = os.environ.get("AIOS_WEB_HOST") or settings.web_host
    port = int(os.environ.get("AIOS_WEB_PORT") or settings.web_port)
    return home, host, port, dashboard_token(home, settings.web_token)


async def _serve(app: Dashboard, host: str, port: int) -> int:
    try:
        server = await app.start(host, port)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        print(f"web_server: cannot listen on {_where(host, port)}: {why}", file=sys.stderr, flush=True)
        return 2
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    print(f"web_server: serving http://{_where(host, port)}/ (`aios dashboard` prints the login link)", flush=True)
    try:
        await stop.wait()
    finally:
        await app.stop(server)
        print("web_server: stopped", flush=True)
    return 0


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
