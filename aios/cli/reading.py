"""`aios status`, `history`, `events`: reading commands. With the daemon down they read
the stored state instead. (`aios logs` is in logs.py.)"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from .. import control, show
from ..errors import AiosError
from . import EXIT_JOB_FAILED, EXIT_NOT_RUNNING, EXIT_OK, command, count, out, print_json


def _status_arguments(cmd) -> None:
    cmd.add_argument("job", nargs="?")
    cmd.add_argument("--json", action="store_true")
    cmd.add_argument("--fleet", action="store_true", help="every device's jobs (fleet mode)")


@command("status", "ls", setup=_status_arguments)
def cmd_status(args, home: str) -> int:
    """Jobs: state, pid, uptime, restarts, last run, next run, tags, and why. Exits 0 when
    every job is as it should be, 4 when a job is failed (or invalid in aios.toml, so it
    does not run), 3 when the daemon is not running (the last recorded state is shown,
    with what /proc says of the pids it recorded)."""
    import time

    if args.fleet:
        return _fleet_status(home, args)
    try:
        jobs, down = control.call(home, "status", **({"job": args.job} if args.job else {})), False
    except control.DaemonNotRunning:
        jobs, down = _stored_status(home, args.job), True
    if args.json:
        print_json(jobs)
    else:
        color = show.use_color(sys.stdout)
        out(show.table(_STATUS_HEADERS, [_status_row(j, time.time(), color) for j in jobs], color))
        warned = next((j["root_warning"] for j in jobs if j.get("root_warning")), None)
        if warned and sys.stdout.isatty():     # for a person; a script has the mark (and --json the field)
            out(show.paint(f"{ROOT_MARK.strip()} {warned}", "dim", color))
        if args.job and jobs and jobs[0].get("log_tail"):
            _print_log_tail(home, jobs[0])
    if down:
        sys.stderr.write("aios: daemon not running; last recorded state\n")
        return EXIT_NOT_RUNNING
    return EXIT_JOB_FAILED if any(j["status"] in ("failed", "invalid") for j in jobs) else EXIT_OK


ROOT_MARK = " !"     # after the name of a job a root daemon runs as root only because no user is set
_STATUS_HEADERS = ["NAME", "TYPE", "STATUS", "PID", "UPTIME", "RESTARTS", "LAST RUN", "NEXT", "TAGS", "WHY"]


def _fleet_status(home: str, args) -> int:
    """Every device's jobs, as each device last stored them."""
    import time

    rows = [r for r in control.call(home, "status", fleet=True) if not args.job or r["name"] == args.job]
    if args.json:
        return print_json(rows)
    color, now = show.use_color(sys.stdout), time.time()
    out(show.table(["DEVICE", "NAME", "STATUS", "PID", "SINCE", "WHY"], [
        [(r["device"], "bold"), (r["name"], None), (r["status"], show.STATUS_COLORS.get(r["status"])),
         (str(r["pid"] or "-"), None), (show.ago(r["since"], now) if r["since"] else "-", None), (r["why"], "dim")]
        for r in rows], color))
    return EXIT_JOB_FAILED if any(r["status"] == "failed" for r in rows) else EXIT_OK


def _status_row(job: dict, now: float, color: bool) -> list:
    last = job.get("last_run")
    last_text = f"{last['outcome'] or 'running'} {show.ago(last['started'], now)}" if last else "-"
    pid = "-" if not job["pid"] else f"{job['pid']} gone" if job.get("pid_alive") is False else str(job["pid"])
    return [
        (job["name"] + (ROOT_MARK if job.get("root_warning") else ""), "bold"), (job["type"], None),
        (job["status"], show.STATUS_COLORS.get(job["status"])),
        (pid, None), (show.duration(job.get("uptime")), None),
        (str(job.get("restarts", 0)), None), (last_text, show.OUTCOME_COLORS.get(last and last["outcome"])),
        (show.until(job.get("next_due"), now), None), (",".join(job.get("tags") or []) or "-", None),
        (_why(job, now), "dim"),
    ]


def _why(job: dict, now: float) -> str:
    """Why a job is not running, in a few words (and the last line it wrote to stderr);
    how a running program job started."""
    status, why = job["status"], job.get("why") or ""
    tail = job.get("log_tail")
    if tail and tail["lines"]:
        why += f"; {'stderr' if tail['stream'] else 'log'}: {tail['lines'][-1]}"
    if status == "backoff" and job.get("next_due"):
        return f"backoff {max(0.0, job['next_due'] - now):.1f} s: {why}"
    if status == "running":
        return "; ".join(part for part in (why, _started(job)) if part)
    return f"{status}: {why}" if why and status in ("failed", "stopped", "ineligible") else why


def _print_log_tail(home: str, job: dict) -> None:
    tail = job["log_tail"]
    out(f"last {'stderr ' if tail['stream'] else ''}lines of {os.path.join(home, 'logs', job['name'] + '.log')}:")
    for line in tail["lines"]:
        out(f"  {line}")


def _started(job: dict) -> str:
    """"zygote", "spawn", or "spawn (why not the zygote)" for a program job's run."""
    if not job.get("started"):
        return ""
    return job["started"] + (f" ({job['start_note']})" if job.get("start_note") else "")


def _stored_status(home: str, name: str | None) -> list[dict]:
    """The jobs as the last daemon recorded them, each pid it recorded checked in /proc, and
    the jobs aios.toml has now but cannot run (invalid); `name` may name a job's copies."""
    from ..jobset import group_of

    with open_stored(home) as store:
        states, last, specs = store.load_states(), store.last_runs(), store.load_specs()
    invalid = {n: why for n, why in _invalid_now(home).items() if n not in specs}
    names = [n for n in (list(specs) or sorted(states)) + sorted(invalid) if name in (None, n, group_of(n))]
    if name and not names:
        raise AiosError(f"no job named {name!r}")
    jobs = [_invalid_job(n, invalid[n]) if n in invalid
            else _stored_job(n, specs.get(n, {}), states.get(n), last.get(n)) for n in names]
    for job in jobs:
        if job["status"] in ("failed", "backoff"):      # as the daemon would show it
            from ..logs import last_words

            job["log_tail"] = last_words(os.path.join(home, "logs", f"{job['name']}.log"))
    return jobs


def _invalid_now(home: str) -> dict:
    from pathlib import Path

    from ..config import ConfigError, load

    try:
        return load(Path(home)).invalid
    except ConfigError:
        return {}


def _invalid_job(name: str, why: str) -> dict:
    return {"name": name, "type": "?", "status": "invalid", "why": f"invalid in aios.toml: {why}", "pid": None,
            "uptime": None, "restarts": 0, "next_due": None, "tags": [], "last_run": None}


def _stored_job(name: str, table: dict, state, last) -> dict:
    from ..spec import plain

    job = {"name": name, "type": table.get("type", "?"), "status": state.status.value if state else "stopped",
           "why": state.why if state else "", "pid": state.pid if state else None, "uptime": None,
           "restarts": state.restarts if state else 0, "next_due": state.next_due if state else None,
           "tags": table.get("tags", []), "last_run": plain(last) if last else None}
    if job["pid"]:
        job.update(_recorded_pid(job, last))
    return job


def _recorded_pid(job: dict, last) -> dict:
    """What /proc says of a pid recorded by a daemon that is gone: the same process (pid and
    start time), still running unsupervised, or gone (then the job's state is unknown)."""
    from ..supervisor import procfs

    pid, stat = job["pid"], procfs.stat(job["pid"])
    ticks = None if stat is None or stat.exited else stat.ticks
    expected = last.pid_start if last is not None and last.pid == pid else None
    if ticks is not None and expected in (None, ticks):
        return {"pid_alive": True, "why": "not supervised: the daemon is down (`aios up -d` adopts it)"}
    return {"pid_alive": False, "status": "unknown",
            "why": f"recorded as {job['status']} with pid {pid}, which is gone (the daemon is down)"}


@contextmanager
def open_stored(home: str):
    """The store of a home whose daemon is not running (for reading)."""
    from pathlib import Path

    from ..config import load
    from ..store import open_store

    settings = load(Path(home)).settings
    path = settings.store_url or os.path.join(home, "orchestrator.db")
    if settings.store_url is None and not os.path.exists(path):
        raise AiosError(f"nothing recorded yet in {home} (no orchestrator.db); start with: aios up -d")
    store = open_store(path, settings.device_id, password_file=settings.store_password_file)
    try:
        yield store
    finally:
        store.close()


def _list_arguments(default: int, follow: bool):
    def setup(cmd) -> None:
        cmd.add_argument("job", nargs="?")
        cmd.add_argument("-n", type=count, default=default, help=f"how many (default {default})")
        cmd.add_argument("--json", action="store_true")
        if follow:
            cmd.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    return setup


@command("history", setup=_list_arguments(20, follow=False))
def cmd_history(args, home: str) -> int:
    """Recent runs: start, duration, exit, outcome, attempt, trigger."""
    runs = _read(home, "history", "recent_runs", args.job, args.n)
    if args.json:
        return print_json(runs)
    color = show.use_color(sys.stdout)
    rows = [[(show.clock(r["started"]), None), (r["job"], "bold"), (str(r["id"]), None),
             (show.duration(r["ended"] - r["started"]) if r["ended"] else "running", None),
             (r["outcome"] or "-", show.OUTCOME_COLORS.get(r["outcome"])),
             (_exit_text(r), None), (str(r["attempt"]), None), (str(r["trigger_id"] or "-"), None)]
            for r in runs]
    out(show.table(["STARTED", "JOB", "RUN", "DURATION", "OUTCOME", "EXIT", "ATTEMPT", "TRIGGER"], rows, color))
    return EXIT_OK


def _exit_text(run: dict) -> str:
    if run["signal"] is not None:
        import signal

        try:
            return signal.Signals(run["signal"]).name
        except ValueError:
            return f"signal {run['signal']}"
    return "-" if run["exit_code"] is None else str(run["exit_code"])


def _read(home: str, op: str, store_method: str, job: str | None, limit: int) -> list[dict]:
    """A list from the daemon, or from the store when no daemon runs."""
    try:
        return control.call(home, op, **({"job": job} if job else {}), limit=limit)
    except control.DaemonNotRunning:
        from ..spec import plain

        with open_stored(home) as store:
            if store_method == "recent_runs":
                return [plain(r) for r in store.recent_runs(job, limit)]
            return [plain(e) for e in store.recent_events(limit, job)]


@command("events", setup=_list_arguments(30, follow=True))
def cmd_events(args, home: str) -> int:
    """The daemon's event log; -f follows it live."""
    if args.follow:
        return _follow_events(home, args)
    events = list(reversed(_read(home, "events", "recent_events", args.job, args.n)))
    if args.json:
        return print_json(events)
    for event in events:
        out(_event_line(event))
    return EXIT_OK


def _event_line(event: dict) -> str:
    return f"{show.clock(event['ts'])}  {event['name']:<18} {event.get('job') or '-':<16} {event['message']}"


def _follow_events(home: str, args) -> int:
    import json

    with control.Client(home, timeout=None) as client:
        client.call("watch")
        while True:
            line = client.receive()
            if "event" not in line:     # the daemon says why it ends the watch
                raise AiosError(line.get("error") or "the daemon ended the watch")
            event = line["event"]
            if args.job and event.get("job") != args.job:
                continue
            out(json.dumps(event) if args.json else _event_line(event))
            sys.stdout.flush()


def _help_arguments(cmd) -> None:
    cmd.add_argument("topic", choices=["states"], help="states: every job status and what moves a job between them")


@command("help", setup=_help_arguments)
def cmd_help(args, home: str) -> int:
    """Reference text: `aios help states` prints the job statuses and their transitions."""
    from ..states import render

    sys.stdout.write(render())
    return EXIT_OK
