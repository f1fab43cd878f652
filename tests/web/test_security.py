"""The dashboard's rules without a daemon: loopback and tokens, the Host check, same
origin and CSRF, log-in, and what escapes text on its way to the browser."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aios.web import security
from aios.web.security import Guard, Refused
from aios.web.server import render_index
from aios.web.sse import frame

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("localhost", True), ("LOCALHOST", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.com", False),
    ("localhost.example.com", False),
])
def test_loopback(host, loopback):
    assert security.is_loopback(host) is loopback


def test_a_public_host_needs_a_token():
    security.check_exposure("127.0.0.1", None)
    security.check_exposure("0.0.0.0", "tok")
    with pytest.raises(security.ExposureError) as err:
        security.check_exposure("0.0.0.0", None)
    assert str(err.value) == ('refusing to serve the dashboard on 0.0.0.0 without a token: set [web] token in '
                              'aios.toml, or host = "127.0.0.1"')


def run_dashboard(home: Path, toml: str, **env) -> subprocess.CompletedProcess:
    home.mkdir()
    (home / "aios.toml").write_text(toml)
    full_env = {**os.environ, "AIOS_HOME": str(home), **env}
    full_env.pop("AIOS_WEB_HOST", None)
    return subprocess.run([sys.executable, "-m", "aios.web"], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=60)


def test_the_server_refuses_a_public_host_without_a_token(tmp_path):
    done = run_dashboard(tmp_path / "home", '[web]\nhost = "0.0.0.0"\n')
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ('web_server: refusing to serve the dashboard on 0.0.0.0 without a token: '
                           'set [web] token in aios.toml, or host = "127.0.0.1"\n')


def test_a_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_dashboard(tmp_path / "home", f"[web]\nport = {port}\n")
    assert done.returncode == 2
    assert done.stderr == f"web_server: cannot listen on 127.0.0.1:{port}: Address already in use\n"


def headers(**values):
    return {key.replace("_", "-"): value for key, value in values.items()}


def test_host_header_without_a_token():
    guard = Guard("127.0.0.1", None)
    for host in ("127.0.0.1:8787", "localhost:8787", "[::1]:8787", "localhost"):
        guard.check_host(headers(Host=host))
    for host in ("evil.example:8787", "127.0.0.1.evil.example", "", "[::2]:8787"):
        with pytest.raises(Refused) as err:
            guard.check_host(headers(Host=host))
        assert err.value.code == 403
    Guard("127.0.0.1", "tok").check_host(headers(Host="dash.example"))   # the token guards it instead


def test_reads_need_the_token_when_there_is_one():
    assert Guard("127.0.0.1", None).check_read({}) is None
    guard = Guard("0.0.0.0", "tok")
    assert guard.check_read(headers(Authorization="Bearer tok")) == "bearer"
    assert guard.check_read(headers(Authorization="bearer tok")) == "bearer"
    for bad in ({}, headers(Authorization="Bearer tok2"), headers(Authorization="Basic tok"),
                headers(Cookie="aios_token=tok"), headers(Cookie="garbage;;=")):
        with pytest.raises(Refused) as err:
            guard.check_read(bad)
        assert err.value.code == 401


def test_writes_need_same_origin_and_csrf_unless_the_token_is_in_the_header():
    guard = Guard("127.0.0.1", None)
    page = headers(Host="127.0.0.1:8787", Origin="http://127.0.0.1:8787", X_CSRF_Token=guard.csrf)
    guard.check_write(page)
    guard.check_write({**page, "Origin": None, "Referer": "http://127.0.0.1:8787/#/events"})
    refused = [
        {**page, "X-CSRF-Token": None}, {**page, "X-CSRF-Token": guard.csrf + "x"},
        {**page, "Origin": "http://127.0.0.1:9999"}, {**page, "Origin": "http://evil.example"},
        {**page, "Origin": "null"}, {**page, "Origin": None},
        {**page, "Origin": None, "Referer": "http://evil.example/127.0.0.1:8787"}, {**page, "Host": None},
    ]
    for bad in refused:
        with pytest.raises(Refused) as err:
            guard.check_write(bad)
        assert err.value.code == 403, bad
    Guard("0.0.0.0", "tok").check_write(headers(Authorization="Bearer tok"))


def test_the_csrf_token_differs_per_server():
    assert Guard("127.0.0.1", None).csrf != Guard("127.0.0.1", None).csrf


def test_login_sets_a_cookie_that_is_not_the_token():
    guard = Guard("0.0.0.0", "tok")
    page = headers(Host="h:1", Origin="http://h:1", X_CSRF_Token=guard.csrf)
    cookie = guard.login(page, "tok")
    assert cookie.endswith("; Path=/; HttpOnly; SameSite=Strict") and "=tok" not in cookie
    value = cookie.split(";")[0]
    assert guard.check_read(headers(Cookie=f"theme=dark; {value}")) == "cookie"
    with pytest.raises(Refused):
        Guard("0.0.0.0", "other").check_read(headers(Cookie=value))
    for token, code in (("nope", 401), (None, 401), (["tok"], 401)):
        with pytest.raises(Refused) as err:
            guard.login(page, token)
        assert err.value.code == code
    with pytest.raises(Refused) as err:
        guard.login({**page, "Origin": "http://evil.example"}, "tok")
    assert err.value.code == 403
    with pytest.raises(Refused) as err:
        Guard("127.0.0.1", None).login(headers(Host="h:1", Origin="http://h:1", X_CSRF_Token="x"), "tok")
    assert err.value.code == 403


def test_the_index_page_gets_an_escaped_csrf_token():
    assert render_index(b'<meta content="{{csrf}}">', 'a"<b>&') == b'<meta content="a&quot;&lt;b&gt;&amp;">'


def test_a_message_is_one_data_line_whatever_the_job_printed():
    hostile = "line\n\nevent: snapshot\ndata: {}\r\n\u2028<script>alert(1)</script>"
    message = frame("event", {"message": hostile})
    assert message.count(b"\n") == 3 and message.endswith(b"\n\n") and message.isascii()
    kind, data = message.decode().split("\n")[:2]
    assert kind == "event: event" and json.loads(data[len("data: "):]) == {"message": hostile}
