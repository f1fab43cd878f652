"""Text for people: aligned tables, colour (only on a terminal, never with NO_COLOR),
durations and moments. Pure functions of their arguments; imports nothing from aios.
"""
from __future__ import annotations

import os
import time

_COLORS = {"green": "32", "red": "31", "yellow": "33", "blue": "34", "dim": "2", "bold": "1"}
STATUS_COLORS = {"running": "green", "failed": "red", "backoff": "yellow", "stopping": "yellow",
                 "waiting": "blue", "stopped": "dim", "disabled": "dim", "ineligible": "dim",
                 "invalid": "red", "missing": "yellow", "unknown": "yellow"}
OUTCOME_COLORS = {"ok": "green", "failed": "red", "killed": "red", "timeout": "red",
                  "spawn_failed": "red", "lost": "yellow", "unknown": "yellow", "stopped": "dim", "preempted": "dim"}


def use_color(stream) -> bool:
    return "NO_COLOR" not in os.environ and hasattr(stream, "isatty") and stream.isatty()


def paint(text: str, color: str | None, enabled: bool) -> str:
    if not enabled or not color or not text:
        return text
    return f"\033[{_COLORS[color]}m{text}\033[0m"


def table(headers: list[str], rows: list[list[tuple[str, str | None]]], color: bool) -> str:
    """Rows of (text, colour) cells under headers, each column as wide as its widest cell;
    the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(text)) for w, (text, _) in zip(widths, row)]
    lines = ["  ".join(paint(h.ljust(w), "bold", color) for h, w in zip(headers, widths)).rstrip()]
    for row in rows:
        cells = [paint(text.ljust(w), c, color) for (text, c), w in zip(row[:-1], widths)]
        cells.append(paint(row[-1][0], row[-1][1], color))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """3h12m, 4m05s, 12.5s, 350ms."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


def ago(moment: float | None, now: float) -> str:
    return "-" if moment is None else f"{duration(max(0.0, now - moment))} ago"


def until(moment: float | None, now: float) -> str:
    """'in 3m05s' for the next day, else the local date and time."""
    if moment is None:
        return "-"
    if moment - now > 86400:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(moment))
    return "now" if moment <= now else f"in {duration(moment - now)}"


def clock(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment))
