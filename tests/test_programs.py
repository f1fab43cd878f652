"""The example programs of aios/programs/, run for real through aios/runner.py in a temp
AIOS_HOME laid out by config.write_default, against a state database made here with
plain sqlite3 (the columns the programs read)."""
from __future__ import annotations

import csv
import json
import os
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from aios.config import write_default

RUNNER = Path(__file__).resolve().parent.parent / "aios" / "runner.py"
DEVICE = "dev1"
DAY = 86400.0

SCHEMA = """
CREATE TABLE job_state (device TEXT, job TEXT, status TEXT, why TEXT, since REAL, pid INTEGER,
    run_id INTEGER, attempts INTEGER, restarts INTEGER, next_due REAL, last_slot REAL,
    draw_day TEXT, draw_at REAL, enabled INTEGER, PRIMARY KEY (device, job));
CREATE TABLE runs (id INTEGER PRIMARY KEY, job TEXT, device TEXT, attempt INTEGER,
    trigger_id INTEGER, due REAL, pid INTEGER, pid_start INTEGER, started REAL, ended REAL,
    exit_code INTEGER, signal INTEGER, outcome TEXT);
CREATE TABLE triggers (id INTEGER PRIMARY KEY, job TEXT, args TEXT, kwargs TEXT, created REAL,
    claimed REAL, device TEXT, done INTEGER DEFAULT 0, finished REAL, outcome TEXT);
CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL, name TEXT, message TEXT, job TEXT, device TEXT);
"""


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    write_default(home)
    return home


def make_db(home: Path) -> Path:
    db = home / "orchestrator.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(SCHEMA)
    conn.close()
    return db


def sql(db: Path, query: str, rows=()) -> list:
    conn = sqlite3.connect(db)
    try:
        with conn:
            if rows:
                conn.executemany(query, rows)
                return []
            return conn.execute(query).fetchall()
    finally:
        conn.close()


def env_for(home: Path, **extra) -> dict:
    env = dict(os.environ, AIOS_HOME=str(home), AIOS_JOB="test", AIOS_RUN_ID="42",
               AIOS_DEVICE_ID=DEVICE)
    env.update(extra)
    return env


def argv(home: Path, target: str, args=(), kwargs=None) -> list[str]:
    payload = json.dumps({"args": list(args), "kwargs": kwargs or {}})
    return [sys.executable, str(RUNNER), str(home / "Programs"), target, payload]


def run(home: Path, target: str, args=(), kwargs=None, **env) -> str:
    """Run a program to completion; return its stdout."""
    done = subprocess.run(argv(home, target, args, kwargs), cwd=home, env=env_for(home, **env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def start(home: Path, target: str, **env) -> subprocess.Popen:
    return subprocess.Popen(argv(home, target), cwd=home, env=env_for(home, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(proc: subprocess.Popen, timeout: float = 20.0) -> str:
    """The first line the process prints: waits on the pipe, not on a clock."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            pytest.fail(f"no output within {timeout} s; stderr: {proc.stderr.read()}")
    return proc.stdout.readline()


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(autouse=True)
def runner_exists():
    if not RUNNER.exists():
        pytest.fail("aios/runner.py is missing")


# ---------------------------------------------------------------- morning_report

def test_morning_report_summarizes_the_last_day(home):
    db = make_db(home)
    now = time.time()
    sql(db, "INSERT INTO runs (job, device, started, ended, exit_code, outcome) VALUES (?, ?, ?, ?, ?, ?)", [
        ("backup", DEVICE, now - 3600, now - 3590, 0, "ok"),
        ("backup", DEVICE, now - 1800, now - 1795, 0, "ok"),
        ("backup", DEVICE, now - 600, now - 595, 1, "failed"),
        ("web_server", DEVICE, now - 100, None, None, None),
        ("backup", DEVICE, now - 2 * DAY, now - 2 * DAY + 5, 0, "ok"),      # too old
        ("backup", "other-device", now - 60, now - 50, 0, "ok"),            # another device
    ])
    out = run(home, "morning_report.py:main")
    report = home / "reports" / f"morning-{time.strftime('%Y-%m-%d', time.localtime(now))}.txt"
    assert out.strip() == str(report)
    lines = report.read_text().splitlines()
    assert lines[0].startswith(f"AIOS morning report for {DEVICE}: runs from ")
    backup = next(line for line in lines if line.startswith("backup "))
    assert backup.split() == ["backup", "3", "2", "1", "0", "20.0s"]
    web = next(line for line in lines if line.startswith("web_server "))
    assert web.split() == ["web_server", "1", "0", "0", "1", "0.0s"]
    assert "4 runs of 2 jobs." in lines


def test_morning_report_without_runs(home):
    make_db(home)
    out = run(home, "morning_report.py:main")
    assert "No runs in the last 24 hours." in Path(out.strip()).read_text()


# ---------------------------------------------------------------- random_check

def test_random_check_appends_a_health_sample(home):
    first = run(home, "random_check.py:main")
    run(home, "random_check.py:main")
    with open(home / "reports" / "health.csv", newline="") as source:
        rows = list(csv.reader(source))
    assert rows[0] == ["time", "device", "disk_total", "disk_used", "disk_free", "mem_total_kb",
                       "mem_available_kb", "load_1m", "load_5m", "load_15m"]
    assert len(rows) == 3 and all(len(row) == 10 for row in rows)
    sample = rows[1]
    assert sample[1] == DEVICE and int(sample[2]) >= int(sample[4]) > 0
    if os.path.exists("/proc/meminfo"):
        assert int(sample[5]) >= int(sample[6]) > 0
    float(sample[7])
    assert first.startswith("random_check: " + sample[0])


# ---------------------------------------------------------------- backup

def test_backup_copies_the_db_and_keeps_the_newest(home):
    db = make_db(home)
    sql(db, "INSERT INTO events (ts, name, message) VALUES (?, ?, ?)", [(1.0, "hello", "kept in the copy")])
    folder = home / "backups"
    folder.mkdir()
    for stamp in ("20000101-000000", "20000102-000000", "20000103-000000"):
        (folder / f"orchestrator-{stamp}.db").write_bytes(b"old")
    out = run(home, "backup.py:main", kwargs={"keep": 2})
    kept = sorted(p.name for p in folder.iterdir())
    assert len(kept) == 2 and kept[0] == "orchestrator-20000103-000000.db"
    new = folder / kept[1]
    assert f"-> {new}" in out and "removed old backup orchestrator-20000101-000000.db" in out
    assert sql(new, "SELECT name, message FROM events") == [("hello", "kept in the copy")]
    assert sql(new, "PRAGMA integrity_check") == [("ok",)]


def test_backup_without_a_database(home):
    assert "nothing to back up" in run(home, "backup.py:main")
    assert not (home / "backups").exists()


# ---------------------------------------------------------------- llm_processor

def test_llm_processor_writes_a_result(home):
    out = run(home, "llm_processor.py:main", args=["hello big world", 3], kwargs={"style": "two words"},
              AIOS_JOB="llm_processor", AIOS_RUN_ID="77")
    assert out.splitlines()[0] == (
        "llm_processor: received args=('hello big world', 3) kwargs={'style': 'two words'}")
    result = json.loads((home / "results" / "llm_processor-77.json").read_text())
    assert result["run_id"] == "77" and result["job"] == "llm_processor"
    assert result["args"] == ["hello big world", 3] and result["kwargs"] == {"style": "two words"}
    assert result["results"] == [
        {"text": "hello big world", "words": 3, "characters": 15},
        {"text": "two words", "words": 2, "characters": 9}]


# ---------------------------------------------------------------- idle_task

def test_idle_task_prunes_old_rotated_logs(home):
    old = time.time() - 40 * DAY
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)   # a first start as root makes it
    for name in ("a.log", "a.log.1", "a.log.2", "b.log.1", "notes.txt"):
        (logs / name).write_text("x")
    for name in ("a.log", "a.log.1", "b.log.1", "notes.txt"):
        os.utime(logs / name, (old, old))
    out = run(home, "idle_task.py:main", kwargs={"days": 30})
    assert out.splitlines()[-1] == "idle_task: removed 2 rotated log files older than 30 days"
    assert sorted(p.name for p in logs.iterdir()) == ["a.log", "a.log.2", "notes.txt"]


# ---------------------------------------------------------------- always jobs

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_web_server_serves_the_dashboard(home):
    port = free_port()
    proc = start(home, "web_server.py:main", AIOS_WEB_PORT=str(port))
    try:
        assert first_line(proc).strip() == (f"web_server: serving http://127.0.0.1:{port}/ "
                                            "(`aios dashboard` prints the login link)")
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "ok")
        status, page = get(f"http://127.0.0.1:{port}/")
        assert status == 200 and '<script type="module" src="/app.js"></script>' in page
        assert get(f"http://127.0.0.1:{port}/api/status")[0] == 401, "a credential first, on loopback too"
        token = (home / "dashboard.token").read_text().strip()
        status, reply = get(f"http://127.0.0.1:{port}/api/status", token)   # no daemon runs for this home
        assert status == 503 and json.loads(reply)["error"].startswith("no AIOS daemon is running for")
    finally:
        code = stop(proc)
    assert code == 0


def test_web_server_refuses_a_placeholder_token(home):
    (home / "aios.toml").write_text('[web]\ntoken = "change-me"\n')
    done = subprocess.run(argv(home, "web_server.py:main"), cwd=home, capture_output=True, text=True, timeout=60,
                          env=env_for(home, AIOS_WEB_HOST="0.0.0.0", AIOS_WEB_PORT=str(free_port())))
    assert done.returncode == 2
    assert done.stderr.startswith("web_server: [web] token is 9 characters; it needs at least 16")


def test_stock_monitor_heartbeat_and_sigterm(home):
    proc = start(home, "stock_monitor.py:main")
    try:
        assert "stock_monitor: alive; no watchlist at" in first_line(proc)
    finally:
        assert stop(proc) == 0


def test_stock_monitor_reads_the_watchlist(home):
    (home / "data").mkdir()
    (home / "data" / "watchlist.csv").write_text("symbol,price_threshold\nACME,12.5\n")
    proc = start(home, "stock_monitor.py:main")
    try:
        line = first_line(proc)
    finally:
        assert stop(proc) == 0
    assert "stock_monitor: ACME (alert at 12.5): no price source is configured" in line


# ---------------------------------------------------------------- notify

class _Hook:
    """A real local HTTP server that keeps what is POSTed and answers `status`."""

    def __init__(self, status: int = 204):
        import http.server
        import threading

        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_server():
    servers = []

    def make(status: int = 204) -> _Hook:
        servers.append(_Hook(status))
        return servers[-1]
    yield make
    for server in servers:
        server.close()


HOOK_ENV = {"AIOS_HOOK_KIND": "on_failure", "AIOS_HOOK_WHY": "failed after 2 attempts"}


def test_notify_posts_the_facts_as_json_to_a_webhook(home, hook_server):
    server = hook_server()
    out = run(home, "notify.py:main", ["backup", "failed", 3, 17], {"url": server.url}, **HOOK_ENV)
    assert out == f"notify: sent: backup failed (exit 3) on {DEVICE}: failed after 2 attempts\n"
    [(path, kind, body)] = server.received
    assert (path, kind) == ("/hook", "application/json")
    assert {k: body[k] for k in ("kind", "job", "outcome", "exit_code", "run_id", "why", "device")} == {
        "kind": "on_failure", "job": "backup", "outcome": "failed", "exit_code": 3, "run_id": 17,
        "why": "failed after 2 attempts", "device": DEVICE}
    assert body["text"] == f"backup failed (exit 3) on {DEVICE}: failed after 2 attempts"


def test_notify_reads_the_facts_from_the_environment_when_run_without_arguments(home, hook_server):
    server = hook_server()
    run(home, "notify.py:main", [], {"url": server.url}, AIOS_HOOK_JOB="sync", AIOS_HOOK_OUTCOME="ok",
        AIOS_HOOK_EXIT_CODE="0", AIOS_HOOK_RUN_ID="5", AIOS_HOOK_KIND="on_success")
    body = server.received[0][2]
    assert (body["job"], body["outcome"], body["exit_code"], body["run_id"]) == ("sync", "ok", 0, 5)
    assert body["text"] == f"sync ok on {DEVICE}"


def test_notify_fails_with_the_reason_when_the_webhook_refuses_or_is_not_there(home, hook_server):
    server = hook_server(status=500)
    for url, reason in ((server.url, "HTTP Error 500"), (f"http://127.0.0.1:{free_port()}/", "Connection refused")):
        done = subprocess.run(argv(home, "notify.py:main", ["backup", "failed", 1, 1], {"url": url, "timeout": 5}),
                              cwd=home, env=env_for(home), capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and done.stderr.startswith("notify: not sent: "), done.stderr
        assert reason in done.stderr


def test_notify_hands_a_mail_to_sendmail(home, tmp_path):
    sendmail, got = tmp_path / "sendmail", tmp_path / "mail.txt"
    sendmail.write_text(f"#!/bin/sh\necho \"$@\" > {got}\ncat >> {got}\n")
    sendmail.chmod(0o755)
    run(home, "notify.py:main", ["backup", "timeout", None, 9],
        {"mail_to": "ops@example.com", "mail_from": "aios@lab", "sendmail": str(sendmail)}, **HOOK_ENV)
    lines = got.read_text().splitlines()
    assert lines[:4] == ["-t -i", "From: aios@lab", "To: ops@example.com",
                         f"Subject: [aios] backup timeout on {DEVICE}: failed after 2 attempts"]
    assert "job: backup" in lines and "outcome: timeout" in lines and "run_id: 9" in lines


def test_notify_without_a_destination_says_what_to_give(home):
    done = subprocess.run(argv(home, "notify.py:main", ["backup", "failed"]), cwd=home, env=env_for(home),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "give url = " in done.stderr
