"""The JSON API and the event streams against a real daemon: reads, changes, the rules a
POST must pass, and the live streams (jobs, events, logs)."""
from __future__ import annotations

import os
import re

from aios import control

from ..integration.conftest import wait_until
from .conftest import EventStream, Served, page_post, request, start_daemon, stop_daemon


def status(home, name):
    return control.call(home, "status", job=name)[0]


def test_reads_mirror_the_control_protocol(web, daemon):
    code, _, reply = request(f"{web.url}/api/ping")
    assert code == 200 and reply["ok"] and reply["result"]["pid"] == daemon.pid
    code, _, reply = request(f"{web.url}/api/status")
    assert code == 200 and {j["name"] for j in reply["result"]} == {"sleeper", "work", "hostile", "gpu_only"}
    _, _, reply = request(f"{web.url}/api/job?job=work")
    assert reply["result"]["spec"] == {"type": "trigger", "program": "work.py:main"}
    assert reply["result"]["log"] == str(daemon.home / "logs" / "work.log")
    _, _, reply = request(f"{web.url}/api/events?limit=2")
    assert len(reply["result"]) == 2 and reply["result"][0]["id"] > reply["result"][1]["id"]
    assert request(f"{web.url}/api/history?job=work&limit=1")[0] == 200


def test_read_errors_name_the_problem(web):
    assert request(f"{web.url}/api/status?job=nope")[0:3:2] == (
        400, {"ok": False, "error": "no job named 'nope' (known: gpu_only, hostile, sleeper, work)"})
    code, _, reply = request(f"{web.url}/api/history?limit=ten")
    assert code == 400 and reply["error"] == "parameter 'limit' must be an integer, not 'ten'"
    code, _, reply = request(f"{web.url}/api/status?name=work")
    assert code == 400 and reply["error"] == "unknown parameter 'name'; accepted: job"
    code, _, reply = request(f"{web.url}/api/restart?job=sleeper")
    assert code == 405 and reply["error"].startswith("GET /api/restart: not an op for GET; GET ops: about, events,")
    assert request(f"{web.url}/api/frobnicate")[0] == 404
    assert request(f"{web.url}/api/ping", "POST", {}, {"Origin": web.url})[0] == 405


def test_a_post_from_the_page_restarts_a_job(web, daemon):
    before = status(daemon.home, "sleeper")["pid"]
    code, _, reply = page_post(web, "restart", {"job": "sleeper"})
    assert (code, reply) == (200, {"ok": True, "result": None})
    wait_until(lambda: status(daemon.home, "sleeper")["pid"] not in (None, before), what="a new sleeper pid")


def test_a_post_without_origin_or_csrf_changes_nothing(web, daemon):
    wait_until(lambda: status(daemon.home, "sleeper")["status"] == "running", what="sleeper running")
    before = status(daemon.home, "sleeper")["pid"]
    url = f"{web.url}/api/stop"
    attempts = [
        {},                                                            # a plain script or form
        {"Origin": "http://evil.example", "X-CSRF-Token": web.app.guard.csrf},
        {"Origin": web.url},                                           # same origin, no CSRF token
        {"Origin": web.url, "X-CSRF-Token": "guessed"},
        {"Origin": "null", "X-CSRF-Token": web.app.guard.csrf},        # a sandboxed frame
    ]
    for headers in attempts:
        code, _, reply = request(url, "POST", {"job": "sleeper"}, headers)
        assert code == 403 and not reply["ok"], headers
    referer = {"Referer": f"{web.url}/#/", "X-CSRF-Token": web.app.guard.csrf}
    assert request(f"{web.url}/api/frobnicate", "POST", {}, referer)[0] == 404
    code, _, reply = request(url, "POST", b"job=sleeper", {"Origin": web.url, "X-CSRF-Token": web.app.guard.csrf,
                                                            "Content-Type": "application/x-www-form-urlencoded"})
    assert code == 415 and "application/json" in reply["error"]
    assert status(daemon.home, "sleeper")["pid"] == before


def test_the_referer_stands_in_for_a_missing_origin(web, daemon):
    headers = {"Referer": f"{web.url}/#/job/sleeper", "X-CSRF-Token": web.app.guard.csrf}
    code, _, reply = request(f"{web.url}/api/enable", "POST", {"job": "sleeper"}, headers)
    assert (code, reply["ok"]) == (200, True)


def test_trigger_with_arguments_and_wait(web, daemon):
    code, _, reply = page_post(web, "trigger", {"job": "work", "args": ["a b", 2], "kwargs": {"k": "<v>"}})
    assert code == 200
    _, _, done = request(f"{web.url}/api/wait?trigger={reply['result']}")
    assert done["result"]["outcome"] == "ok"
    assert "work got ['a b', 2] {'k': '<v>'}" in (daemon.home / "logs" / "work.log").read_text()
    code, _, reply = page_post(web, "trigger", {"job": "sleeper"})
    assert code == 400 and "always job" in reply["error"]
    code, _, reply = page_post(web, "trigger", ["work"])
    assert code == 400 and reply["error"].startswith("the body must be a JSON object")


def test_the_host_header_must_name_this_machine(web):
    port = web.url.rsplit(":", 1)[1]
    code, _, reply = request(f"{web.url}/api/ping", headers={"Host": f"rebound.example:{port}"})
    assert code == 403 and reply["error"].startswith("unexpected Host header 'rebound.example:")
    assert request(f"{web.url}/", headers={"Host": f"rebound.example:{port}"})[0] == 403
    assert request(f"{web.url}/api/ping", headers={"Host": f"localhost:{port}"})[0] == 200


def test_pages_and_headers(web):
    code, headers, page = request(f"{web.url}/")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert f'<meta name="csrf-token" content="{web.app.guard.csrf}">' in page
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
    stream = EventStream(web.url, "/api/stream")
    try:
        kind, snapshot = stream.next()
        assert kind == "snapshot" and snapshot["csrf"] == web.app.guard.csrf
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
    stream = EventStream(web.url, "/api/log?job=hostile&lines=5")
    try:
        kind, lines = stream.until(lambda k, d: k == "lines" and d, "the first lines")
        assert "<script>window.__pwned = 1</script>" in lines
        control.call(daemon.home, "trigger", job="work", args=["fresh line"])   # another job's log: not here
        control.call(daemon.home, "restart", job="hostile")
        stream.until(lambda k, d: k == "lines" and "<script>window.__pwned = 1</script>" in d, "the new run's lines")
    finally:
        stream.close()
    code, _, reply = request(f"{web.url}/api/log?job=nope")
    assert code == 400 and reply["error"].startswith("no job named 'nope'")


def _inotify_fds() -> int:
    return sum(os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify" for fd in _fds())


def _fds() -> list[str]:
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        fds.append(fd)
    return fds


def test_a_log_stream_ends_when_the_browser_leaves(web, daemon):
    """The log tail sleeps on inotify, not on a poll; a client that hangs up still ends
    its thread at once, and the inotify instance with it."""
    before = _inotify_fds()
    stream = EventStream(web.url, "/api/log?job=hostile&lines=5")
    stream.until(lambda k, d: k == "lines" and d, "the first lines")
    wait_until(lambda: _inotify_fds() == before + 1, what="the log stream's inotify watch")
    stream.close()
    wait_until(lambda: _inotify_fds() == before, what="the log stream's end")


def test_the_stream_reconnects_after_a_reexec(web, daemon):
    started = web.app.hub.about["started"]
    stream = EventStream(web.url, "/api/stream")
    try:
        stream.next()
        control.call(daemon.home, "reexec")
        _, snapshot = stream.until(lambda k, d: k == "snapshot" and d["daemon"] and d["daemon"]["started"] != started,
                                   "a snapshot from the re-executed daemon")
        assert snapshot["daemon"]["pid"] == daemon.pid and len(snapshot["jobs"]) == 4
    finally:
        stream.close()


def test_without_a_daemon_reads_say_so_and_the_stream_waits(tmp_path):
    home = tmp_path / "home"
    served = Served(home)
    try:
        code, _, reply = request(f"{served.url}/api/status")
        assert code == 503 and reply["error"].startswith("no AIOS daemon is running for")
        stream = EventStream(served.url, "/api/stream")
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


def test_a_token_guards_reads_and_writes(daemon):
    served = Served(daemon.home, token="s3cret tok=en")
    try:
        url = served.url
        assert request(f"{url}/api/ping")[0] == 401
        assert request(f"{url}/api/ping", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert request(f"{url}/api/ping", headers={"Authorization": "Bearer s3cret tok=en"})[0] == 200
        assert request(f"{url}/")[0] == 200      # the page itself holds no data: it asks to log in
        code, _, _ = request(f"{url}/api/enable", "POST", {"job": "work"}, {"Authorization": "Bearer s3cret tok=en"})
        assert code == 200                       # a script with the token needs no page or CSRF token
        assert page_post(served, "login", {"token": "nope"})[0] == 401
        assert request(f"{url}/api/login", "POST", {"token": "s3cret tok=en"})[0] == 403
        code, headers, _ = page_post(served, "login", {"token": "s3cret tok=en"})
        cookie = headers["Set-Cookie"].split(";")[0]
        assert code == 200 and "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert "s3cret" not in cookie
        assert request(f"{url}/api/ping", headers={"Cookie": cookie})[0] == 200
        assert request(f"{url}/api/enable", "POST", {"job": "work"}, {"Cookie": cookie})[0] == 403
        assert page_post(served, "enable", {"job": "work"}, Cookie=cookie)[0] == 200
        assert page_post(served, "enable", {"job": "work"})[0] == 401
        port = url.rsplit(":", 1)[1]
        assert request(f"{url}/api/ping", headers={"Cookie": cookie, "Host": f"dash.example:{port}"})[0] == 200
    finally:
        served.close()
