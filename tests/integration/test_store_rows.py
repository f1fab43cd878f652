"""Rows another program inserts into the `triggers` table are acted on at once, each on
its own: the daemon must not wait for some later write to notice one."""
from __future__ import annotations

import json

from .conftest import DaemonProcess, insert_trigger, wait_until, write_home


def work_daemon(home) -> DaemonProcess:
    """A daemon whose trigger job `work` appends its argument to out.txt."""
    write_home(home, """
[jobs.work]
type = "trigger"
command = ["sh", "-c", 'echo "$1" >> "$AIOS_HOME/out.txt"', "work"]
""")
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    return daemon


def test_each_row_inserted_by_another_process_runs_without_any_later_write(home):
    daemon = work_daemon(home)
    out = home / "out.txt"
    for i in range(15):   # one at a time: the next row is inserted only once this one ran
        insert_trigger(home, "work", json.dumps([f"row{i}"]))
        wait_until(lambda: out.exists() and f"row{i}\n" in out.read_text(), timeout=10,
                   what=f"row {i} to run with nothing else written after it")
    assert daemon.terminate() == 0


def test_a_row_right_after_another_write_runs_without_any_later_write(home):
    """Two commits in a row by another program: the kernel merges the second write's
    inotify event into the first's while it is unread, so the daemon's look may find only
    the first (13 rows of 40 were never run before the store was looked at again after
    every write)."""
    daemon = work_daemon(home)
    out = home / "out.txt"
    for i in range(40):
        insert_trigger(home, f"no_such_job_{i}")     # waits for its job; the write is what matters
        insert_trigger(home, "work", json.dumps([f"row{i}"]))
        wait_until(lambda: out.exists() and f"row{i}\n" in out.read_text(), timeout=10,
                   what=f"row {i} to run with nothing else written after it")
    assert daemon.terminate() == 0
