"""random_check: record one health sample of this machine.

Appends a CSV line to $AIOS_HOME/reports/health.csv (with a header when the file is new)
and prints it: the time, disk total/used/free bytes of the file system holding
$AIOS_HOME, MemTotal and MemAvailable in kB from /proc/meminfo (empty where there is no
/proc), and the 1, 5 and 15 minute load averages. Standard library only.
"""
import csv
import io
import os
import shutil
import time
from pathlib import Path

HEADER = ("time", "device", "disk_total", "disk_used", "disk_free",
          "mem_total_kb", "mem_available_kb", "load_1m", "load_5m", "load_15m")


def memory():
    """(MemTotal, MemAvailable) in kB, or ("", "") without /proc/meminfo."""
    values = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as source:
            for line in source:
                key, _, rest = line.partition(":")
                values[key] = rest.split()[0] if rest.split() else ""
    except OSError:
        pass
    return values.get("MemTotal", ""), values.get("MemAvailable", "")


def sample(home):
    disk = shutil.disk_usage(home)
    try:
        load = tuple(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        load = ("", "", "")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return (stamp, os.environ.get("AIOS_DEVICE_ID", ""), disk.total, disk.used, disk.free,
            *memory(), *load)


def main():
    home = Path(os.environ.get("AIOS_HOME", "."))
    out = home / "reports" / "health.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    row = sample(home)
    new = not out.exists() or out.stat().st_size == 0
    with open(out, "a", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        if new:
            writer.writerow(HEADER)
        writer.writerow(row)
    line = io.StringIO()
    csv.writer(line).writerow(row)
    print(f"random_check: {line.getvalue().strip()} -> {out}")
