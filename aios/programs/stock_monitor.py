"""stock_monitor: an always-running watch over the symbols in $AIOS_HOME/data/watchlist.csv.

Honest about what it can do: there is no market data feed on this machine. Every 60 s it
reads the watchlist (lines of `symbol,price_threshold`; a header line and # comments are
skipped) and prints one line per symbol saying that no price source is configured, or a
heartbeat line when there is no watchlist. Plug a real quote source into `check()`.
Exits 0 at once on SIGTERM. Standard library only.
"""
import csv
import os
import signal
import sys
import time
from pathlib import Path

PERIOD = 60.0


def read_watchlist(path):
    """[(symbol, threshold)] from the CSV; rows that do not parse are reported and skipped."""
    items = []
    with open(path, newline="", encoding="utf-8") as source:
        for row in csv.reader(source):
            if not row or row[0].strip().startswith("#") or row[0].strip().lower() == "symbol":
                continue
            try:
                items.append((row[0].strip(), float(row[1])))
            except (IndexError, ValueError):
                print(f"stock_monitor: skipping bad watchlist row {row!r}", flush=True)
    return items


def check(path):
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if not path.exists():
        print(f"{stamp} stock_monitor: alive; no watchlist at {path}", flush=True)
        return
    for symbol, threshold in read_watchlist(path):
        print(f"{stamp} stock_monitor: {symbol} (alert at {threshold:g}): "
              "no price source is configured, nothing checked", flush=True)


def main():
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    path = Path(os.environ.get("AIOS_HOME", ".")) / "data" / "watchlist.csv"
    while True:
        check(path)
        time.sleep(PERIOD)
