"""web_server: a minimal HTTP status page for AIOS (a later version becomes the dashboard).

Serves on 127.0.0.1:8787 (or $AIOS_WEB_HOST / $AIOS_WEB_PORT):
  /         an HTML table of the jobs of this device (name, status, why, pid, next due),
            read from the job_state table of $AIOS_HOME/orchestrator.db, opened read-only
  /healthz  "ok"
Runs until SIGTERM, then closes its socket and exits 0. Standard library only.
"""
import html
import os
import signal
import sqlite3
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COLUMNS = ("job", "status", "why", "pid", "next_due")
HEADINGS = ("name", "status", "why", "pid", "next due")


def job_rows():
    """(job, status, why, pid, next_due) for this device, or all devices if unknown."""
    db = Path(os.environ.get("AIOS_HOME", ".")).absolute() / "orchestrator.db"
    if not db.exists():
        return []
    device = os.environ.get("AIOS_DEVICE_ID")
    query = f"SELECT {', '.join(COLUMNS)} FROM job_state"
    params = ()
    if device:
        query, params = query + " WHERE device = ?", (device,)
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=2)
    try:
        return conn.execute(query + " ORDER BY job", params).fetchall()
    finally:
        conn.close()


def show(column, value):
    if value is None:
        return ""
    if column == "next_due":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    return str(value)


def status_page():
    try:
        rows, note = job_rows(), ""
    except sqlite3.Error as exc:
        rows, note = [], f"cannot read the state database: {exc}"
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(show(c, v))}</td>" for c, v in zip(COLUMNS, row)) + "</tr>"
        for row in rows)
    head = "".join(f"<th>{h}</th>" for h in HEADINGS)
    empty = "" if rows else f"<p>{html.escape(note or 'No jobs recorded yet.')}</p>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>AIOS status</title>"
        "<meta http-equiv='refresh' content='5'></head><body><h1>AIOS status</h1>"
        f"<table border='1'><tr>{head}</tr>{cells}</table>{empty}</body></html>")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self.reply(200, "text/plain; charset=utf-8", "ok")
        elif path == "/":
            self.reply(200, "text/html; charset=utf-8", status_page())
        else:
            self.reply(404, "text/plain; charset=utf-8", "not found")

    def reply(self, code, content_type, body):
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        print(f"{self.address_string()} {format % args}", flush=True)


def main():
    host = os.environ.get("AIOS_WEB_HOST", "127.0.0.1")
    port = int(os.environ.get("AIOS_WEB_PORT", "8787"))
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"web_server: serving http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("web_server: stopped", flush=True)
