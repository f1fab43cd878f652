"""`aios logs`: what jobs wrote, read back from their log files (aios.logview), so it works
with the daemon up or down: one job's log, or every job's merged by time with a name
column; a time window, a pattern, only stderr, JSON, and -f on all of them."""
from __future__ import annotations

import os
import sys

from .. import show
from . import EXIT_OK, UsageError, command, count, fail, out

DEFAULT_LINES = 50


def _arguments(cmd) -> None:
    cmd.add_argument("job", nargs="?", help="one job's log (default: every job's, merged by time)")
    cmd.add_argument("-n", type=count, default=None,
                     help=f"the last N lines (default {DEFAULT_LINES}; all of a --since/--until window)")
    cmd.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    cmd.add_argument("--since", metavar="WHEN", help="from WHEN: 30s, 10m, 2h, 1d (ago), 18:00, "
                     "2026-11-29, '2026-11-29 18:00', today, yesterday, now")
    cmd.add_argument("--until", metavar="WHEN", help="up to WHEN (the same forms)")
    cmd.add_argument("--grep", metavar="PATTERN", help="only lines whose text matches this regular expression")
    cmd.add_argument("--stderr", action="store_true", help="only what the jobs wrote to stderr")
    cmd.add_argument("--json", action="store_true",
                     help='one object per line: {"ts", "job", "stream", "text"} ("partial": true on a piece of a line)')


@command("logs", setup=_arguments)
def cmd_logs(args, home: str) -> int:
    """What jobs wrote to stdout and stderr, each line with its time and stream (stderr
    marked `err`): one job's log (a job with `instances`: each copy's, named), or every
    job's merged by time with a name column.
    --since/--until choose a window (rotated logs included), --grep a pattern, --stderr
    a stream; --json prints one object per line; -f keeps following. Logs written without
    timestamps ([logs] timestamps = "none") are shown as they are."""
    from .. import logview

    flt = _filter(args)
    folder = os.path.join(home, "logs")
    files = logview.log_files(folder, _job_name(args.job) if args.job else None)
    if args.job and not any(map(os.path.exists, files.values())) and not args.follow:
        return fail(f"no log for job {args.job!r} yet ({files[args.job]} does not exist)")
    _notes(files, flt)
    printer = Printer(args, list(files))
    if flt.timed:
        entries, followers = logview.window(files, flt, args.n, unfinished=not args.follow)
    else:
        entries, followers = logview.last(files, DEFAULT_LINES if args.n is None else args.n, flt,
                                          unfinished=not args.follow)
    for entry in entries:
        printer.print(entry)
    if args.follow:
        _follow(logview.Follow(followers, flt, folder=None if args.job else folder), printer)
    return EXIT_OK


def _follow(follow, printer) -> None:
    sys.stdout.flush()
    try:
        for entry in follow.entries():
            printer.print(entry)
            sys.stdout.flush()
    finally:
        follow.close()


def _filter(args):
    import re
    import time

    from ..logview import Filter, when

    if args.until and args.follow:
        raise UsageError("--until and -f do not go together: a window that ends cannot be followed")
    now, moments = time.time(), {}
    for name in ("since", "until"):
        if getattr(args, name):
            try:
                moments[name] = when(getattr(args, name), now)
            except ValueError as exc:
                raise UsageError(f"--{name} {exc}") from None
    try:
        pattern = re.compile(args.grep) if args.grep is not None else None
    except re.error as exc:
        raise UsageError(f"--grep {args.grep!r} is not a regular expression: {exc}") from None
    return Filter(since=moments.get("since"), until=moments.get("until"), pattern=pattern,
                  stream="stderr" if args.stderr else None)


def _notes(files: dict, flt) -> None:
    """Say which logs a time window or --stderr cannot choose from (written unstamped)."""
    if not (flt.timed or flt.stream):
        return
    from .. import logformat, logs

    what = "a time window" if flt.timed else "--stderr"
    for path in files.values():
        tail = logs.Follower(path).last(20)
        if tail and all(logformat.parse(line).ts is None for line in tail):
            sys.stderr.write(f"aios: {path} has no timestamps (it was written with [logs] timestamps = \"none\"); "
                             f"{what} cannot choose among its lines\n")


class Printer:
    """Entries as text (time, job when there are several, stream, text) or as JSON."""

    def __init__(self, args, jobs: list):
        self.json, self.one_job = args.json, len(jobs) == 1 and bool(args.job)
        self.width = max((len(job) for job in jobs), default=0)
        self.color = show.use_color(sys.stdout) and not args.json

    def print(self, entry) -> None:
        out(self.json_line(entry) if self.json else self.text_line(entry))

    def json_line(self, entry) -> str:
        import json

        line = entry.line
        fields = {"ts": line.ts, "job": entry.job, "stream": line.stream,
                  "text": line.text.decode("utf-8", "replace")}
        if line.partial:
            fields["partial"] = True
        return json.dumps(fields, ensure_ascii=False)

    def text_line(self, entry) -> str:
        from ..logformat import moment

        line = entry.line
        text = line.text.decode("utf-8", "replace")
        job = "" if self.one_job else show.paint(entry.job.ljust(self.width), "bold", self.color) + " "
        if line.ts is None:
            return f"{job}{text}"
        stream = show.paint("err", "red", self.color) if line.stream == "stderr" else "out"
        return f"{show.paint(moment(line.ts), 'dim', self.color)} {job}{stream} {text}"


def _job_name(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"{name!r} is not a job name")
    return name
