"""The JSON API and the event streams against a real daemon: reads, changes, the rules a
POST must pass, and the live streams (jobs, events, logs)."""
from __future__ import annotations

import re

from aios import control

from ..integration.conftest import wait_until
from .conftest import BEARER, TOKEN, EventStream, Login, Served, get, request, start_daemon, stop_daemon


def status(home, name):
    return control.call(home, "status", job=name)[0]


def test_reads_mirror_the_control_protocol(web, daemon):
    code, _, reply = get(web, "/api/ping")
    assert code == 200 and reply["ok"] and reply["result"]["pid"] == daemon.pid
    code, _, reply = get(web, "/api/status")
    assert code == 200
    assert {j["name"] for j in reply["result"]} == {"sleeper", "work", "hostile", "gpu_only", "secretive"}
    _, _, reply = get(web, "/api/job?job=work")
    assert reply["result"]["spec"] == {"type": "trigger", "program": "work.py:main"}
    assert reply["result"]["log"] == str(daemon.home / "logs" / "work.log")
    _, _, reply = get(web, "/api/events?limit=2")
    assert len(reply["result"]) == 2 and reply["result"][0]["id"] > reply["result"][1]["id"]
    assert get(web, "/api/history?job=work&limit=1")[0] == 200


def test_a_jobs_env_values_never_leave(web, daemon):
    code, _, reply = get(web, "/api/job?job=secretive")
    assert code == 200 and reply["result"]["spec"]["env"] == {"API_KEY": "***", "MODE": "***"}
    assert "hunter2" not in str(reply) and "fast" not in str(reply)
    assert control.call(daemon.home, "job", job="secretive")["spec"]["env"]["API_KEY"] == "hunter2-abc", \
        "the owner's own socket shows them"


def test_limits_are_capped(web, daemon):
    for _ in range(3):
        control.call(daemon.home, "trigger", job="work")
    code, _, reply = get(web, "/api/events?limit=1000000")
    assert code == 200 and len(reply["result"]) <= 1000
    assert get(web, "/api/events?limit=99999999999999999999999")[0] == 400


def test_read_errors_name_the_problem(web):
    assert get(web, "/api/status?job=nope")[0:3:2] == (
        400, {"ok": False, "error": "no job named 'nope' (known: gpu_only, hostile, secretive, sleeper, work)"})
    code, _, reply = get(web, "/api/history?limit=ten")
    assert code == 400 and reply["error"] == "parameter 'limit' must be an integer, not 'ten'"
    code, _, reply = get(web, "/api/status?name=work")
    assert code == 400 and reply["error"] == "unknown parameter 'name'; accepted: job"
    code, _, reply = get(web, "/api/restart?job=sleeper")
    assert code == 405 and reply["error"].startswith("GET /api/restart: not an op for GET; GET ops: about, events,")
    assert get(web, "/api/frobnicate")[0] == 404
    assert request(f"{web.url}/api/ping", "POST", {}, {"Origin": web.url, **BEARER})[0] == 405
    assert request(f"{web.url}/api/ping", "DELETE", None, BEARER)[0] == 405
    code, headers, _ = request(f"{web.url}/api/stop", "OPTIONS", None, {"Origin": "http://evil.example",
                                                                      "Access-Control-Request-Method": "POST"})
    assert code == 405 and "Access-Control-Allow-Origin" not in headers, "no CORS preflight is ever granted"


def test_a_post_from_the_page_restarts_a_job(web, daemon):
    before = status(daemon.home, "sleeper")["pid"]
    code, _, reply = Login(web).post("restart", {"job": "sleeper"})
    assert (code, reply) == (200, {"ok": True, "result": None})
    wait_until(lambda: status(daemon.home, "sleeper")["pid"] not in (None, before), what="a new sleeper pid")


def test_fleet_and_route_on_a_device_outside_a_fleet_say_what_fleet_mode_needs(web):
    code, _, reply = get(web, "/api/fleet")
    assert code == 400 and reply["error"].startswith("Fleet mode needs PostgreSQL"), reply
    code, _, reply = Login(web).post("route", {"device": "b", "request": {"op": "restart", "job": "sleeper"}})
    assert code == 400 and reply["error"].startswith("Fleet mode needs PostgreSQL"), reply
    assert get(web, "/api/fleet?device=b")[0] == 400, "the fleet op takes no parameter"


def test_a_post_without_origin_or_csrf_changes_nothing(web, daemon):
    wait_until(lambda: status(daemon.home, "sleeper")["status"] == "running", what="sleeper running")
    before = status(daemon.home, "sleeper")["pid"]
    page, other = Login(web), Login(web)
    url = f"{web.url}/api/stop"
    attempts = [
        ({}, 401),                                                            # a plain script or form
        ({"Origin": web.url, "X-CSRF-Token": page.csrf}, 401),                # no session
        ({"Cookie": page.cookie}, 403),                                       # a form another site posts
        ({"Cookie": page.cookie, "Origin": "http://evil.example", "X-CSRF-Token": page.csrf}, 403),
        ({"Cookie": page.cookie, "Origin": web.url}, 403),                    # same origin, no CSRF token
        ({"Cookie": page.cookie, "Origin": web.url, "X-CSRF-Token": "guessed"}, 403),
        ({"Cookie": page.cookie, "Origin": web.url, "X-CSRF-Token": other.csrf}, 403),   # another session's
        ({"Cookie": page.cookie, "Origin": "null", "X-CSRF-Token": page.csrf}, 403),     # a sandboxed frame
        ({"Authorization": "Bearer wrong", "Origin": web.url}, 401),
    ]
    for headers, expected in attempts:
        code, _, reply = request(url, "POST", {"job": "sleeper"}, headers)
        assert (code, reply["ok"]) == (expected, False), headers
    assert page.post("frobnicate", {})[0] == 404
    code, _, reply = page.post("stop", b"job=sleeper", **{"Content-Type": "application/x-www-form-urlencoded"})
    assert code == 415 and "application/json" in reply["error"]
    assert status(daemon.home, "sleeper")["pid"] == before


def test_the_referer_stands_in_for_a_missing_origin(web, daemon):
    page = Login(web)
    code, _, reply = page.post("enable", {"job": "sleeper"}, Origin=None, Referer=f"{web.url}/#/job/sleeper")
    assert (code, reply["ok"]) == (200, True)


def test_trigger_with_arguments_and_wait(web, daemon):
    page = Login(web)
    code, _, reply = page.post("trigger", {"job": "work", "args": ["a b", 2], "kwargs": {"k": "<v>"}})
    assert code == 200
    _, _, done = page.get(f"/api/wait?trigger={reply['result']}")
    assert done["result"]["outcome"] == "ok"
    assert "work got ['a b', 2] {'k': '<v>'}" in (daemon.home / "logs" / "work.log").read_text()
    code, _, reply = page.post("trigger", {"job": "sleeper"})
    assert code == 400 and "always job" in reply["error"]
    code, _, reply = page.post("trigger", ["work"])
    assert code == 400 and reply["error"].startswith("the body must be a JSON object")


def test_nothing_but_the_pages_without_a_credential(web):
    """Loopback included, whatever the Host header says (a DNS-rebinding page has no
    credential for this origin): data and changes need the token or a session."""
    port = web.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"rebound.example:{port}"):
        for path in ("/api/ping", "/api/status", "/api/job?job=work", "/api/stream", "/api/log?job=work",
                     "/api/session", "/api/wait?trigger=1"):
            code, _, reply = request(f"{web.url}{path}", headers={"Host": host})
            assert code == 401 and reply["error"].startswith("log in first"), (host, path)
        assert request(f"{web.url}/", headers={"Host": host})[0] == 200
    assert get(web, "/api/ping", Host=f"rebound.example:{port}")[0] == 200


def test_pages_and_headers(web):
    code, headers, page = request(f"{web.url}/")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "csrf" not in page.lower() and TOKEN not in page, "the page holds no secret"
    assert '<script type="module" src="/app.js"></script>' in page
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    code, headers, _ = request(f"{web.url}/app.js")
    assert code == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    for path in ("/index.html", "/../server.py", "/static/app.js", "/%2e%2e/api.py"):
        code, headers, _ = request(f"{web.url}{path}")
        assert code == 404 and headers["X-Content-Type-Options"] == "nosniff", path
    assert request(f"{web.url}/healthz")[0::2] == (200, "ok")


def test_no_static_file_writes_html_from_data():
    from aios.web.server import STATIC

    for script in STATIC.glob("*.js"):
        source = script.read_text()
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", source), script.name


def test_the_stream_starts_from_a_snapshot_and_follows_changes(web, daemon):
    page = Login(web)
    stream = EventStream(web.url, "/api/stream", {"Cookie": page.cookie})
    try:
        kind, snapshot = stream.next()
        assert kind == "snapshot" and snapshot["csrf"] == page.csrf
        assert snapshot["daemon"]["pid"] == daemon.pid
        before = next(j for j in snapshot["jobs"] if j["name"] == "sleeper")["pid"]
        control.call(daemon.home, "restart", job="sleeper")
        stream.until(lambda k, d: k == "event" and d["name"] == "status" and d["job"] == "sleeper", "status event")
        _, job = stream.until(lambda k, d: k == "job" and d["name"] == "sleeper" and d["status"] == "running"
                              and d["pid"] not in (None, before), "the restarted sleeper")
        assert job["uptime"] is not None and job["read_at"] > 0
    finally:
        stream.close()


def test_the_log_stream_sends_the_tail_then_new_lines(web, daemon):
    stream = EventStream(web.url, "/api/log?job=hostile&lines=5", BEARER)
    try:
        kind, lines = stream.until(lambda k, d: k == "lines" and d, "the first lines")
        assert "<script>window.__pwned = 1</script>" in lines
        control.call(daemon.home, "trigger", job="work", args=["fresh line"])   # another job's log: not here
        control.call(daemon.home, "restart", job="hostile")
        stream.until(lambda k, d: k == "lines" and "<script>window.__pwned = 1</script>" in d, "the new run's lines")
    finally:
        stream.close()
    code, _, reply = get(web, "/api/log?job=nope")
    assert code == 400 and reply["error"].startswith("no job named 'nope'")


def test_a_log_stream_ends_when_the_browser_leaves(web, daemon):
    """The log tail sleeps on the shared inotify instance, not on a poll; a client that
    hangs up still ends its task at once, and its watches with it."""
    stream = EventStream(web.url, "/api/log?job=hostile&lines=5", BEARER)
    stream.until(lambda k, d: k == "lines" and d, "the first lines")
    assert web.call(lambda: (web.app.tails.open_tails, bool(web.app.tails.watches.users))) == (1, True)
    stream.close()
    wait_until(lambda: web.call(lambda: (web.app.tails.open_tails, web.app.tails.watches.users)) == (0, {}),
               what="the log stream's end")


def test_the_stream_reconnects_after_a_reexec(web, daemon):
    started = web.app.hub.about["started"]
    stream = EventStream(web.url, "/api/stream", BEARER)
    try:
        stream.next()
        control.call(daemon.home, "reexec")
        _, snapshot = stream.until(lambda k, d: k == "snapshot" and d["daemon"] and d["daemon"]["started"] != started,
                                   "a snapshot from the re-executed daemon")
        assert snapshot["daemon"]["pid"] == daemon.pid and len(snapshot["jobs"]) == 5
    finally:
        stream.close()


def test_without_a_daemon_reads_say_so_and_the_stream_waits(tmp_path):
    home = tmp_path / "home"
    served = Served(home)
    try:
        code, _, reply = get(served, "/api/status")
        assert code == 503 and reply["error"].startswith("no AIOS daemon is running for")
        stream = EventStream(served.url, "/api/stream", BEARER)
        try:
            assert stream.next()[1]["daemon"] is None
            daemon = start_daemon(home, "[jobs.later]\ntype = \"always\"\ncommand = [\"sleep\", \"100\"]\n")
            try:
                _, snapshot = stream.until(lambda k, d: k == "snapshot" and d["daemon"], "the daemon coming up")
                assert [j["name"] for j in snapshot["jobs"]] == ["later"]
            finally:
                stop_daemon(daemon)
            stream.until(lambda k, d: k == "snapshot" and d["daemon"] is None, "the daemon going away")
        finally:
            stream.close()
    finally:
        served.close()


def test_a_session_lives_from_login_to_logout(web):
    assert request(f"{web.url}/api/login", "POST", {"token": TOKEN})[0] == 403, "only from the page's origin"
    code, _, reply = request(f"{web.url}/api/login", "POST", {"token": "nope" * 5}, {"Origin": web.url})
    assert code == 401 and reply["error"].startswith("wrong token")
    page = Login(web)
    assert "HttpOnly" in page.set_cookie and "SameSite=Strict" in page.set_cookie and "Max-Age=" in page.set_cookie
    assert "Secure" not in page.set_cookie and TOKEN not in page.cookie
    assert page.cookie.startswith(f"aios_session_{web.port}=")
    code, _, reply = page.get("/api/session")
    assert code == 200 and reply["result"]["csrf"] == page.csrf
    assert page.get("/api/ping")[0] == 200
    assert get(web, "/api/session")[2]["result"] == {"csrf": None}, "a script with the token has no session"
    assert Login(web).cookie != page.cookie and Login(web).csrf != page.csrf
    code, headers, _ = page.post("logout", {})
    assert code == 200 and "Max-Age=0" in headers["Set-Cookie"]
    assert page.get("/api/ping")[0] == 401 and page.post("enable", {"job": "work"})[0] == 401


def test_behind_a_tls_proxy_the_cookie_is_secure(web):
    code, headers, _ = request(f"{web.url}/api/login", "POST", {"token": TOKEN},
                               {"Origin": web.url, "X-Forwarded-Proto": "https"})
    assert code == 200 and "; Secure" in headers["Set-Cookie"]


def test_a_script_uses_the_token_in_the_header(daemon):
    served = Served(daemon.home, token="s3cret tok=en, long enough")
    try:
        url = served.url
        assert request(f"{url}/api/ping")[0] == 401
        assert request(f"{url}/api/ping", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(f"{url}/api/ping", headers={"Authorization": "Bearer s3cret tok=en, long enough"})[0] == 200
        code, _, _ = request(f"{url}/api/enable", "POST", {"job": "work"},
                             {"Authorization": "Bearer s3cret tok=en, long enough"})
        assert code == 200                       # a script with the token needs no page or CSRF token
    finally:
        served.close()


def test_a_session_survives_a_restart_of_the_dashboard_but_not_a_new_token(daemon):
    served = Served(daemon.home)
    page = Login(served)
    served.close()
    again = Served(daemon.home)
    try:
        page.served = again
        cookie = page.cookie.replace(f"aios_session_{served.port}", f"aios_session_{again.port}")
        assert request(f"{again.url}/api/session", headers={"Cookie": cookie})[2]["result"]["csrf"] == page.csrf
    finally:
        again.close()
    other = Served(daemon.home, token="another-token-9a8b7c6d5e")
    try:
        cookie = page.cookie.replace(f"aios_session_{served.port}", f"aios_session_{other.port}")
        assert request(f"{other.url}/api/session", headers={"Cookie": cookie})[0] == 401
    finally:
        other.close()
