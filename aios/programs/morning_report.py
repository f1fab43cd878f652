"""morning_report: a summary of the last 24 hours of AIOS runs.

Reads the `runs` table of $AIOS_HOME/orchestrator.db (read-only; only this device's runs
when $AIOS_DEVICE_ID is set) and writes $AIOS_HOME/reports/morning-YYYY-MM-DD.txt: per
job the number of runs, how many ended ok, failed or are still running, and their total
duration. Prints the report's path. Standard library only.
"""
import os
import sqlite3
import time
from pathlib import Path

DAY = 86400.0
FAILED = ("failed", "killed", "timeout", "spawn_failed", "lost")

QUERY = """
SELECT job, COUNT(*),
       SUM(outcome = 'ok'),
       SUM(outcome IN ({failed})),
       SUM(ended IS NULL),
       SUM(CASE WHEN ended IS NOT NULL THEN ended - started ELSE 0 END)
FROM runs WHERE started >= ? {device}
GROUP BY job ORDER BY job
"""


def summarize(db, since, device):
    query = QUERY.format(failed=", ".join("?" * len(FAILED)),
                         device="AND device = ?" if device else "")
    params = (*FAILED, since) + ((device,) if device else ())
    conn = sqlite3.connect(f"{db.absolute().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def render(rows, now, device):
    start = time.strftime("%Y-%m-%d %H:%M", time.localtime(now - DAY))
    end = time.strftime("%Y-%m-%d %H:%M", time.localtime(now))
    lines = [f"AIOS morning report{' for ' + device if device else ''}: runs from {start} to {end}", ""]
    if not rows:
        return "\n".join(lines + ["No runs in the last 24 hours.", ""])
    lines.append(f"{'job':<24} {'runs':>5} {'ok':>5} {'failed':>6} {'running':>7} {'total time':>12}")
    for job, count, ok, failed, running, seconds in rows:
        lines.append(f"{job:<24} {count:>5} {ok or 0:>5} {failed or 0:>6} {running or 0:>7} "
                     f"{(seconds or 0):>11.1f}s")
    total = sum(row[1] for row in rows)
    lines += ["", f"{total} runs of {len(rows)} jobs.", ""]
    return "\n".join(lines)


def main():
    home = Path(os.environ.get("AIOS_HOME", "."))
    device = os.environ.get("AIOS_DEVICE_ID")
    now = time.time()
    db = home / "orchestrator.db"
    rows = summarize(db, now - DAY, device) if db.exists() else []
    out = home / "reports" / f"morning-{time.strftime('%Y-%m-%d', time.localtime(now))}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(rows, now, device), encoding="utf-8")
    print(out)
