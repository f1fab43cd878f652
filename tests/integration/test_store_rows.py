"""Rows another program inserts into the `triggers` table are acted on at once, each on
its own: the daemon must not wait for some later write to notice one."""
from __future__ import annotations

import json

from .conftest import DaemonProcess, insert_trigger, wait_until, write_home


def test_each_row_inserted_by_another_process_runs_without_any_later_write(home):
    write_home(home, """
[jobs.work]
type = "trigger"
command = ["sh", "-c", 'echo "$1" >> "$AIOS_HOME/out.txt"', "work"]
""")
    daemon = DaemonProcess(home)
    daemon.wait_ready()
    out = home / "out.txt"
    for i in range(15):   # one at a time: the next row is inserted only once this one ran
        insert_trigger(home, "work", json.dumps([f"row{i}"]))
        wait_until(lambda: out.exists() and f"row{i}\n" in out.read_text(), timeout=10,
                   what=f"row {i} to run with nothing else written after it")
    assert daemon.terminate() == 0
