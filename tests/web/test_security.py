"""The dashboard's rules without a daemon, as pure functions of headers and a fake clock:
the token and sessions, same origin and CSRF, the throttle, token checks, what is
masked, and what escapes text on its way to the browser; then the server refusing to
start with a token it cannot trust."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aios.home import TokenError, check_token
from aios.web import security
from aios.web.security import BEARER, SESSION_IDLE, SESSION_LIFE, Guard, Refused, Throttle, mask_env
from aios.web.sse import frame

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-3f8a1c9e7b2d5064"


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def headers(**values):
    return {key.replace("_", "-"): value for key, value in values.items() if value is not None}


PAGE = headers(Host="h:1", Origin="http://h:1")


def logged_in(guard: Guard, **extra):
    session, set_cookie = guard.login(PAGE, "10.0.0.1", TOKEN, secure=False)
    return session, set_cookie.split(";")[0], set_cookie


def refused(code: int, fn, *args) -> Refused:
    with pytest.raises(Refused) as err:
        fn(*args)
    assert err.value.code == code, err.value.message
    return err.value


def test_the_token_in_the_header_is_a_credential():
    guard = Guard(TOKEN)
    assert guard.authenticate(headers(Authorization=f"Bearer {TOKEN}"), "c") is BEARER
    assert guard.authenticate(headers(Authorization=f"bearer {TOKEN}"), "c") is BEARER
    for bad in ({}, headers(Authorization=f"Bearer {TOKEN}x"), headers(Authorization=f"Basic {TOKEN}"),
                headers(Cookie=f"aios_session={TOKEN}"), headers(Cookie="garbage;;="), headers(Authorization="Bearer")):
        refused(401, guard.authenticate, bad, "c")
    guard.check_write({}, BEARER)     # a script with the token needs no page or CSRF token


def test_a_login_makes_a_random_session_with_its_own_csrf_token():
    guard = Guard(TOKEN)
    session, cookie, set_cookie = logged_in(guard)
    assert set_cookie.endswith(f"; Path=/; Max-Age={int(SESSION_LIFE)}; HttpOnly; SameSite=Strict")
    assert TOKEN not in cookie and cookie.startswith("aios_session=")
    found = guard.authenticate(headers(Cookie=f"theme=dark; {cookie}"), "c")
    assert found.sid == session.sid and found.csrf == session.csrf
    other, other_cookie, _ = logged_in(guard)
    assert other_cookie != cookie and other.csrf != session.csrf
    assert "; Secure" in guard.login(PAGE, "c", TOKEN, secure=True)[1]


def test_a_session_cookie_cannot_be_forged_or_carried_to_another_token():
    guard = Guard(TOKEN)
    _, cookie, _ = logged_in(guard)
    name, value = cookie.split("=", 1)
    sid, expires, mac = value.split(".")
    last = "1" if mac.endswith("0") else "0"    # one character of the MAC changed (never to itself)
    forged = [f"{sid}.{int(expires) + 10**6}.{mac}", f"{sid}x.{expires}.{mac}", f"{sid}.{expires}.{mac[:-1]}{last}",
              f"{sid}.{expires}", sid, f"{sid}.-1.{mac}", "..", f"{sid}.{expires}.{mac}.x"]
    for bad in forged:
        refused(401, guard.authenticate, headers(Cookie=f"{name}={bad}"), "c")
    refused(401, Guard("another-token-1b2c3d4e5f").authenticate, headers(Cookie=cookie), "c")


def test_sessions_end_when_idle_when_old_and_at_logout():
    clock = Clock()
    guard = Guard(TOKEN, clock=clock)
    _, cookie, _ = logged_in(guard)
    for _ in range(20):     # used every 11 hours: lives until SESSION_LIFE
        clock.now += SESSION_IDLE - 3600
        if clock.now - 1_000_000.0 >= SESSION_LIFE:
            refused(401, guard.authenticate, headers(Cookie=cookie), "c")
            break
        guard.authenticate(headers(Cookie=cookie), "c")
    else:
        pytest.fail("the session outlived SESSION_LIFE")
    _, idle, _ = logged_in(guard)
    clock.now += SESSION_IDLE + 1
    refused(401, guard.authenticate, headers(Cookie=idle), "c")
    session, ended, _ = logged_in(guard)
    assert guard.logout(session) == "aios_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
    refused(401, guard.authenticate, headers(Cookie=ended), "c")
    assert guard.logout(BEARER).endswith("Max-Age=0; HttpOnly; SameSite=Strict")


def test_a_restarted_dashboard_knows_the_sessions_of_its_token():
    _, cookie, _ = logged_in(Guard(TOKEN))
    assert Guard(TOKEN).authenticate(headers(Cookie=cookie), "c").sid


def test_changes_with_a_cookie_need_same_origin_and_the_sessions_csrf_token():
    guard = Guard(TOKEN)
    session, cookie, _ = logged_in(guard)
    other, _, _ = logged_in(guard)
    page = headers(Host="127.0.0.1:8787", Origin="http://127.0.0.1:8787", X_CSRF_Token=session.csrf)
    guard.check_write(page, session)
    guard.check_write({**page, "Origin": None, "Referer": "http://127.0.0.1:8787/#/events"}, session)
    proxied = {**page, "Host": "127.0.0.1:8787", "Origin": "https://dash.example", "X-Forwarded-Host": "dash.example"}
    guard.check_write(proxied, session)     # a proxy that changes Host says which host the browser used
    for bad in [{**page, "X-CSRF-Token": None}, {**page, "X-CSRF-Token": session.csrf + "x"},
                {**proxied, "X-Forwarded-Host": "elsewhere.example"},
                {**page, "X-CSRF-Token": other.csrf}, {**page, "Origin": "http://127.0.0.1:9999"},
                {**page, "Origin": "http://evil.example"}, {**page, "Origin": "null"}, {**page, "Origin": None},
                {**page, "Origin": None, "Referer": "http://evil.example/127.0.0.1:8787"}, {**page, "Host": None}]:
        refused(403, guard.check_write, bad, session)


def test_login_comes_from_the_page_with_the_right_token():
    guard = Guard(TOKEN)
    refused(403, guard.login, headers(Host="h:1", Origin="http://evil.example"), "c", TOKEN, False)
    refused(403, guard.login, headers(Host="h:1"), "c", TOKEN, False)
    refused(401, guard.login, PAGE, "c", TOKEN + "x", False)
    refused(400, guard.login, PAGE, "c", [TOKEN], False)
    refused(400, guard.login, PAGE, "c", None, False)


def test_wrong_tokens_are_throttled_per_client_then_for_everyone():
    clock = Clock()
    guard = Guard(TOKEN, clock=clock)
    burst, every = Throttle.CLIENT
    for _ in range(burst):
        refused(401, guard.authenticate, headers(Authorization="Bearer guess"), "10.0.0.7")
    err = refused(429, guard.authenticate, headers(Authorization=f"Bearer {TOKEN}"), "10.0.0.7")
    assert err.message == f"too many wrong tokens from 10.0.0.7; try again in {round(every)} s"
    assert err.headers == (("Retry-After", str(round(every))),)
    assert guard.authenticate(headers(Authorization=f"Bearer {TOKEN}"), "10.0.0.8") is BEARER
    clock.now += every
    assert guard.authenticate(headers(Authorization=f"Bearer {TOKEN}"), "10.0.0.7") is BEARER
    refused(401, guard.authenticate, headers(Authorization="Bearer guess"), "10.0.0.7")
    refused(429, guard.authenticate, headers(Authorization="Bearer guess"), "10.0.0.7")
    budget, _ = Throttle.GLOBAL
    for n in range(budget):     # many addresses: the global budget runs out
        try:
            guard.authenticate(headers(Authorization="Bearer guess"), f"10.1.{n // 250}.{n % 250}")
        except Refused as exc:
            if exc.code == 429:
                break
    err = refused(429, guard.authenticate, headers(Authorization=f"Bearer {TOKEN}"), "10.9.9.9")
    assert err.message.startswith("too many wrong tokens from this dashboard")


def test_a_session_is_never_throttled():
    clock = Clock()
    guard = Guard(TOKEN, clock=clock)
    _, cookie, _ = logged_in(guard)
    for n in range(200):
        try:
            guard.authenticate(headers(Authorization="Bearer guess"), f"10.2.0.{n}")
        except Refused:
            pass
    assert guard.authenticate(headers(Cookie=cookie), "10.2.0.1").sid


def test_the_throttle_remembers_a_bounded_number_of_clients():
    clock = Clock()
    throttle = Throttle(clock)
    for n in range(Throttle.CLIENTS_MAX + 50):
        clock.now += 1.0       # the global budget refills; each address fails once
        throttle.failed(f"c{n}")
    assert len(throttle.clients) <= Throttle.CLIENTS_MAX


@pytest.mark.parametrize("token, fine", [
    ("tok-3f8a1c9e7b2d5064", True), ("correct horse battery staple", True),
    ("short", False), ("fifteen-chars-x", False), ("change-me", False), ("change-me-change-me-now", False),
    ("CHANGEME1234567890ab", False), ("a long random string", False), ("my-secret-dashboard-key", False),
    ("aaaaaaaaaaaaaaaaaaaaaaaa", False), ("abababababababababab", False), ("your_token_goes_here!!", False),
])
def test_tokens_that_cannot_guard_anything_are_refused(token, fine):
    if fine:
        assert check_token(token) == token
    else:
        with pytest.raises(TokenError) as err:
            check_token(token)
        assert str(err.value).startswith("[web] token ") and "remove [web] token from aios.toml" in str(err.value)


def test_env_values_are_masked():
    spec = {"command": ["x"], "env": {"API_KEY": "hunter2", "EMPTY": ""}, "tags": ["a"]}
    assert mask_env(spec) == {"command": ["x"], "env": {"API_KEY": "***", "EMPTY": "***"}, "tags": ["a"]}
    assert mask_env({"command": ["x"]}) == {"command": ["x"]}
    assert spec["env"]["API_KEY"] == "hunter2", "the daemon's own copy is untouched"


def test_tls_is_what_a_proxy_says():
    assert security.through_tls(headers(X_Forwarded_Proto="https"))
    assert security.through_tls(headers(X_Forwarded_Proto=" HTTPS "))
    assert not security.through_tls(headers(X_Forwarded_Proto="http")) and not security.through_tls({})


def test_a_message_is_one_data_line_whatever_the_job_printed():
    hostile = "line\n\nevent: snapshot\ndata: {}\r\n\u2028<script>alert(1)</script>"
    message = frame("event", {"message": hostile})
    assert message.count(b"\n") == 3 and message.endswith(b"\n\n") and message.isascii()
    kind, data = message.decode().split("\n")[:2]
    assert kind == "event: event" and json.loads(data[len("data: "):]) == {"message": hostile}


# ---------------------------------------------------------------- start-up

def run_dashboard(home: Path, toml: str, **env) -> subprocess.CompletedProcess:
    home.mkdir(exist_ok=True)
    (home / "aios.toml").write_text(toml)
    full_env = {**os.environ, "AIOS_HOME": str(home), **env}
    full_env.pop("AIOS_WEB_HOST", None)
    return subprocess.run([sys.executable, "-m", "aios.web"], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("token, why", [
    ("change-me", "[web] token is 9 characters; it needs at least 16"),
    ("change-me-please-now", "[web] token looks like a placeholder, not a secret"),
])
def test_the_server_refuses_a_token_it_cannot_trust(tmp_path, token, why):
    done = run_dashboard(tmp_path / "home", f'[web]\nhost = "0.0.0.0"\ntoken = "{token}"\n')
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"web_server: {why}: remove [web] token from aios.toml (a random one is then made "
                           "for you) or set a long random one\n")


def test_a_token_file_others_can_read_is_refused(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dashboard.token").write_text("tok-3f8a1c9e7b2d5064\n")
    os.chmod(home / "dashboard.token", 0o644)
    done = run_dashboard(home, "")
    assert done.returncode == 2
    assert done.stderr == (f"web_server: {home / 'dashboard.token'} has mode 0644; others may read it: remove it "
                           "and a new token is made (or chmod 600 it)\n")


def test_a_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_dashboard(tmp_path / "home", f"[web]\nport = {port}\n")
    assert done.returncode == 2
    assert done.stderr == f"web_server: cannot listen on 127.0.0.1:{port}: Address already in use\n"
