"""`aios dashboard`: the dashboard's login link for this home (as `jupyter server list`
prints its servers' links), and `announce`, which the foreground start uses to print it.

The link is `http://HOST:PORT/#token=TOKEN`: the token rides in the fragment, which a
browser never sends, so it stays out of every request line and server log; the page
logs in with it and removes it from the address bar. Imports config and home, lazily.
"""
from __future__ import annotations

import os
import sys

from .. import control
from ..errors import AiosError
from . import EXIT_OK, UsageError, command, out

WEB_PROGRAM = "web_server.py:"


def _arguments(cmd) -> None:
    cmd.add_argument("--new-token", action="store_true",
                     help="replace the home's token first (every link and login made with the old one ends); "
                          "restarts web_server if it runs")


@command("dashboard", setup=_arguments)
def cmd_dashboard(args, home: str) -> int:
    """Print the dashboard's login link (it holds the token: keep it to yourself)."""
    from ..home import new_dashboard_token

    settings = _settings(home)
    if args.new_token:
        if settings.web_token is not None:
            raise UsageError("[web] token in aios.toml is the token: change it there, then "
                             "`aios restart web_server`")
        new_dashboard_token(home)
        _restart_web_server(home)
    out(login_url(home, settings))
    note = _serving_note(home)
    if note:
        sys.stderr.write(f"aios: {note}\n")
    return EXIT_OK


def login_url(home: str, settings=None) -> str:
    """The link that logs a browser in to this home's dashboard (the token is made on
    first use)."""
    from ..home import dashboard_token

    settings = settings or _settings(home)
    host = os.environ.get("AIOS_WEB_HOST") or settings.web_host
    port = os.environ.get("AIOS_WEB_PORT") or settings.web_port
    return f"http://{_browser_host(host)}:{port}/#token={dashboard_token(home, settings.web_token)}"


def announce(home: str, stream=None) -> None:
    """For the foreground start: print the login link when the home's config runs the
    dashboard (a new home's default does) and `stream` (default stdout) is a terminal,
    never into a log file. Problems are left for the daemon to report."""
    stream = stream or sys.stdout
    if not stream.isatty():
        return
    try:
        if _runs_dashboard(home):
            stream.write(f"aios: dashboard: {login_url(home)}\n")
            stream.flush()
    except (OSError, ValueError, AiosError):
        pass


def _runs_dashboard(home: str) -> bool:
    from pathlib import Path

    from .. import config

    if not os.path.exists(os.path.join(home, config.CONFIG_FILE)):
        return True             # the default aios.toml, written at the start, has web_server
    tables = config.load(Path(home)).tables
    return any(str(table.get("program", "")).startswith(WEB_PROGRAM) for table in tables.values())


def _settings(home: str):
    from pathlib import Path

    from .. import config

    exists = os.path.exists(os.path.join(home, config.CONFIG_FILE))
    return config.load(Path(home), None if exists else "").settings


def _browser_host(host: str) -> str:
    """Where a browser on this machine reaches a server listening on `host`."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _restart_web_server(home: str) -> None:
    """Restart the jobs serving the dashboard, so they take the new token."""
    try:
        jobs = control.call(home, "status")
    except control.DaemonNotRunning:
        return
    for job in jobs:
        detail = control.call(home, "job", job=job["name"])
        if str(detail["spec"].get("program", "")).startswith(WEB_PROGRAM) and job["status"] == "running":
            control.call(home, "restart", job=job["name"])
            out(f"aios: restarted {job['name']} with the new token")


def _serving_note(home: str) -> str | None:
    """Why the link may not open yet, if the daemon or its dashboard job is not running."""
    try:
        jobs = control.call(home, "status")
    except control.DaemonNotRunning:
        return "no daemon is running for this home: the dashboard opens once it is (aios up -d)"
    except AiosError:
        return None
    names = [job["name"] for job in jobs if job["status"] == "running"]
    if "web_server" in {job["name"] for job in jobs} and "web_server" not in names:
        return "the web_server job is not running (aios start web_server)"
    return None
