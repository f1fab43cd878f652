"""idle_task: housekeeping while the machine is otherwise idle.

Deletes the rotated logs ($AIOS_HOME/logs/*.log.N) not modified for `days` and prints
the count. (Old runs, triggers and events are pruned by the daemon itself: [retention]
in aios.toml; backup.py keeps its newest backups.) On
SIGTERM (AIOS stops idle jobs when other work starts) it exits with 143, as a shell
reports SIGTERM. Standard library only.
"""
import os
import signal
import sys
import time
from pathlib import Path


def prune_files(folder, pattern, cutoff, keep_if=lambda path: True):
    removed = 0
    for path in folder.glob(pattern):
        if keep_if(path) and path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink()
            removed += 1
    return removed


def main(days=30):
    if isinstance(days, bool) or not isinstance(days, (int, float)) or days < 0:
        raise SystemExit(f"idle_task: days = {days!r} must be a number of days, 0 or more")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    home = Path(os.environ.get("AIOS_HOME", "."))
    cutoff = time.time() - days * 86400
    print(f"idle_task: pruning what ended before {time.strftime('%Y-%m-%d %H:%M', time.localtime(cutoff))}",
          flush=True)
    logs = prune_files(home / "logs", "*.log.*", cutoff, lambda path: path.suffix[1:].isdigit())
    print(f"idle_task: removed {logs} rotated log files older than {days:g} days")
