"""The `aios` command (also `python -m aios`): argparse over the control socket.

Each command imports only what it needs: talking to a running daemon costs json and a
socket; the store, the config parser and the engine load only for the commands that use
them (reads with the daemon down, `add`/`rm`, `up`). Exit codes: 0 ok, 1 the operation
failed, 2 usage, 3 no daemon is running. Imports control, home, show, logs, and (lazily)
config, store, daemon.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager

from . import control, show
from .errors import AiosError
from .home import find_home

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3
_COMMANDS: dict = {}


def command(*names: str):
    def register(fn):
        for name in names:
            _COMMANDS[name] = fn
        return fn
    return register


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = _parse(parser, argv)
    home = os.path.abspath(args.home) if args.home else find_home()
    try:
        return _COMMANDS[args.cmd](args, home) or EXIT_OK
    except control.DaemonNotRunning as exc:
        return _fail(str(exc), EXIT_NOT_RUNNING)
    except AiosError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `aios logs x | head`
        sys.stderr.close()
        return EXIT_OK


def _parse(parser, argv):
    """parse_args, except that the arguments of `trigger` and the command of `add` may
    also follow options (`aios trigger job --wait a b`, `aios add x --type ... -- cmd`)."""
    args, extra = parser.parse_known_args(argv)
    trailing = {"trigger": "args", "add": "command"}.get(args.cmd)
    if extra and trailing:
        if extra[0] == "--":
            extra = extra[1:]
        elif any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)} (put -- before arguments that start with -)")
        getattr(args, trailing).extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd in ("start", "stop", "restart") and bool(args.jobs) == bool(args.all):
        parser.error(f"{args.cmd}: name one or more jobs, or give --all")
    return args


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    sys.stderr.write(f"aios: {message}\n")
    return code


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _json(value) -> None:
    import json

    _out(json.dumps(value, indent=2, default=str))


# ================================================================ daemon lifecycle

@command("up")
def cmd_up(args, home: str) -> int:
    """Run the daemon: in the foreground, or detached with -d (returns once it is ready)."""
    if args.detach:
        return _up_detached(home, args.force)
    from pathlib import Path

    from .daemon import serve

    return serve(Path(home), force=args.force)


def _up_detached(home: str, force: bool) -> int:
    import subprocess
    import time

    try:
        return _fail(f"a daemon (pid {control.call(home, 'ping')['pid']}) is already running for {home}")
    except control.DaemonNotRunning:
        pass
    os.makedirs(home, mode=0o750, exist_ok=True)
    began = time.perf_counter()
    read_end, write_end = os.pipe()
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    log_fd = os.open(os.path.join(home, "orchestrator.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    with open(log_fd, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aios", "--home", home, "up"] + (["--force"] if force else []),
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=package_parent, start_new_session=True,
            pass_fds=(write_end,), env={**os.environ, "AIOS_READY_FD": str(write_end)})
    os.close(write_end)
    ready = _read_ready(read_end)
    if not ready.startswith("ready"):
        tail = _log_tail(os.path.join(home, "orchestrator.log"), 5)
        return _fail(f"the daemon did not start (exit status {proc.poll()}); orchestrator.log says:\n{tail}")
    took = (time.perf_counter() - began) * 1000
    _out(f"aios: daemon pid {proc.pid} ready in {took:.1f} ms (its own start-up: {ready.split()[1]} ms); home {home}")
    return EXIT_OK


def _read_ready(fd: int, timeout: float = 60.0) -> str:
    import select

    data = b""
    while b"\n" not in data and select.select([fd], [], [], timeout)[0]:
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data.decode(errors="replace")


def _log_tail(path: str, n: int) -> str:
    from . import logs

    return "\n".join("  " + line.rstrip("\n") for line in logs.tail(path, n)) or "  (nothing)"


@command("down")
def cmd_down(args, home: str) -> int:
    """Stop every job gracefully, then the daemon; returns when all have exited."""
    import time

    began = time.perf_counter()
    pid = control.call(home, "shutdown")["pid"]
    _wait_gone(pid)
    _out(f"aios: daemon pid {pid} and its jobs stopped in {(time.perf_counter() - began) * 1000:.0f} ms")
    return EXIT_OK


def _wait_gone(pid: int, timeout: float = 600.0) -> None:
    """Wait for a process to exit: on its pidfd where there are pidfds, else by looking."""
    import select
    import time

    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None:
        select.select([fd], [], [], timeout)
        os.close(fd)
        return
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)


@command("reexec")
def cmd_reexec(args, home: str) -> int:
    """Replace the daemon's code in place (same pid); every job keeps running."""
    import time

    began = time.perf_counter()
    before = control.call(home, "ping")
    control.call(home, "reexec")
    after = _new_image(home, before["started"], began + 30.0)
    if after is None:
        tail = _log_tail(os.path.join(home, "orchestrator.log"), 5)
        return _fail(f"the daemon did not come back within 30 s; its jobs keep running and `aios up -d` "
                     f"adopts them. orchestrator.log says:\n{tail}")
    _out(f"aios: daemon pid {after['pid']} re-executed in {(time.perf_counter() - began) * 1000:.1f} ms; "
         f"{after['jobs']} jobs kept running")
    return EXIT_OK


def _new_image(home: str, started: float, deadline: float) -> dict | None:
    """Ping until a daemon started after `started` answers (the re-executed one)."""
    import time

    while time.perf_counter() < deadline:
        try:
            about = control.call(home, "ping")
        except control.DaemonNotRunning:  # caught in the exec itself, or the new code failed
            time.sleep(0.01)
            continue
        if about["started"] != started:
            return about
    return None


# ================================================================ reading

@command("status", "ls")
def cmd_status(args, home: str) -> int:
    """Jobs: state, pid, uptime, restarts, last run, next run, tags, and why."""
    import time

    try:
        jobs, note = control.call(home, "status", **({"job": args.job} if args.job else {})), None
    except control.DaemonNotRunning:
        jobs, note = _stored_status(home, args.job), "daemon not running; last recorded state"
    if args.json:
        return _json(jobs)
    color = show.use_color(sys.stdout)
    _out(show.table(_STATUS_HEADERS, [_status_row(j, time.time(), color) for j in jobs], color))
    if note:
        sys.stderr.write(f"aios: {note}\n")
    return EXIT_OK


_STATUS_HEADERS = ["NAME", "TYPE", "STATUS", "PID", "UPTIME", "RESTARTS", "LAST RUN", "NEXT", "TAGS", "WHY"]


def _status_row(job: dict, now: float, color: bool) -> list:
    last = job.get("last_run")
    last_text = f"{last['outcome'] or 'running'} {show.ago(last['started'], now)}" if last else "-"
    return [
        (job["name"], "bold"), (job["type"], None), (job["status"], show.STATUS_COLORS.get(job["status"])),
        (str(job["pid"] or "-"), None), (show.duration(job.get("uptime")), None),
        (str(job.get("restarts", 0)), None), (last_text, show.OUTCOME_COLORS.get(last and last["outcome"])),
        (show.until(job.get("next_due"), now), None), (",".join(job.get("tags") or []) or "-", None),
        (_why(job, now), "dim"),
    ]


def _why(job: dict, now: float) -> str:
    """Why a job is not running, in a few words."""
    status, why = job["status"], job.get("why") or ""
    if status == "backoff" and job.get("next_due"):
        return f"backoff {max(0.0, job['next_due'] - now):.1f} s: {why}"
    if status == "running":
        return why
    return f"{status}: {why}" if why and status in ("failed", "stopped", "ineligible") else why


def _stored_status(home: str, name: str | None) -> list[dict]:
    with _open_store(home) as store:
        states, last, specs = store.load_states(), store.last_runs(), store.load_specs()
    names = [name] if name else list(specs) or sorted(states)
    if name and name not in specs and name not in states:
        raise AiosError(f"no job named {name!r}")
    return [_stored_job(n, specs.get(n, {}), states.get(n), last.get(n)) for n in names]


def _stored_job(name: str, table: dict, state, last) -> dict:
    from .spec import plain

    return {"name": name, "type": table.get("type", "?"), "status": state.status.value if state else "stopped",
            "why": state.why if state else "", "pid": state.pid if state else None, "uptime": None,
            "restarts": state.restarts if state else 0, "next_due": state.next_due if state else None,
            "tags": table.get("tags", []), "last_run": plain(last) if last else None}


@contextmanager
def _open_store(home: str):
    """The store of a home whose daemon is not running (for reading)."""
    from pathlib import Path

    from .config import load
    from .store import open_store

    path = os.path.join(home, "orchestrator.db")
    if not os.path.exists(path):
        raise AiosError(f"nothing recorded yet in {home} (no orchestrator.db); start with: aios up -d")
    store = open_store(path, load(Path(home)).settings.device_id)
    try:
        yield store
    finally:
        store.close()


@command("history")
def cmd_history(args, home: str) -> int:
    """Recent runs: start, duration, exit, outcome, attempt, trigger."""
    runs = _read(home, "history", "recent_runs", args.job, args.n)
    if args.json:
        return _json(runs)
    color = show.use_color(sys.stdout)
    rows = [[(show.clock(r["started"]), None), (r["job"], "bold"), (str(r["id"]), None),
             (show.duration(r["ended"] - r["started"]) if r["ended"] else "running", None),
             (r["outcome"] or "-", show.OUTCOME_COLORS.get(r["outcome"])),
             (_exit_text(r), None), (str(r["attempt"]), None), (str(r["trigger_id"] or "-"), None)]
            for r in runs]
    _out(show.table(["STARTED", "JOB", "RUN", "DURATION", "OUTCOME", "EXIT", "ATTEMPT", "TRIGGER"], rows, color))
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
        from .spec import plain

        with _open_store(home) as store:
            if store_method == "recent_runs":
                return [plain(r) for r in store.recent_runs(job, limit)]
            return [plain(e) for e in store.recent_events(limit, job)]


@command("events")
def cmd_events(args, home: str) -> int:
    """The daemon's event log; -f follows it live."""
    if args.follow:
        return _follow_events(home, args)
    events = list(reversed(_read(home, "events", "recent_events", args.job, args.n)))
    if args.json:
        return _json(events)
    for event in events:
        _out(_event_line(event))
    return EXIT_OK


def _event_line(event: dict) -> str:
    return f"{show.clock(event['ts'])}  {event['name']:<18} {event.get('job') or '-':<16} {event['message']}"


def _follow_events(home: str, args) -> int:
    import json

    with control.Client(home, timeout=None) as client:
        client.call("watch")
        while True:
            event = client.receive()["event"]
            if args.job and event.get("job") != args.job:
                continue
            _out(json.dumps(event) if args.json else _event_line(event))
            sys.stdout.flush()


@command("logs")
def cmd_logs(args, home: str) -> int:
    """A job's captured stdout and stderr; -f follows it."""
    from . import logs

    path = os.path.join(home, "logs", f"{_job_name(args.job)}.log")
    if not os.path.exists(path) and not args.follow:
        return _fail(f"no log for job {args.job!r} yet ({path} does not exist)")
    for line in logs.tail(path, args.n) if os.path.exists(path) else []:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
    if args.follow:
        sys.stdout.flush()
        for line in logs.follow(path):
            sys.stdout.write(line + "\n")  # follow() yields lines without their newline
            sys.stdout.flush()
    return EXIT_OK


def _job_name(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise AiosError(f"{name!r} is not a job name")
    return name


# ================================================================ acting on jobs

def _each(home: str, op: str, names: list[str], select_all) -> int:
    """Apply one op to the named jobs (or, with --all, to the jobs select_all picks)."""
    with control.Client(home) as client:
        if select_all:
            names = [j["name"] for j in client.call("status") if select_all(j)]
        failed = 0
        for name in names:
            try:
                client.call(op, job=name)
                _out(f"{name}: {op} ok")
            except AiosError as exc:
                failed += 1
                sys.stderr.write(f"aios: {name}: {exc}\n")
    return EXIT_FAILED if failed else EXIT_OK


_RUNNABLE = ("disabled", "ineligible")


@command("start")
def cmd_start(args, home: str) -> int:
    """Start jobs that are stopped or failed."""
    return _each(home, "start", args.jobs, args.all and (lambda j: j["status"] not in _RUNNABLE))


@command("stop")
def cmd_stop(args, home: str) -> int:
    """Stop jobs (stop signal to each process group, SIGKILL after stop_timeout)."""
    return _each(home, "stop", args.jobs, args.all and (lambda j: j["status"] not in _RUNNABLE + ("stopped",)))


@command("restart")
def cmd_restart(args, home: str) -> int:
    """Stop jobs and start them again."""
    picked = args.all and (lambda j: j["status"] not in _RUNNABLE and (j["type"] == "always" or j["pids"]))
    return _each(home, "restart", args.jobs, picked)


@command("enable")
def cmd_enable(args, home: str) -> int:
    """Enable a job (kept across restarts)."""
    return _each(home, "enable", [args.job], None)


@command("disable")
def cmd_disable(args, home: str) -> int:
    """Disable a job, stopping its processes (kept across restarts)."""
    return _each(home, "disable", [args.job], None)


@command("run")
def cmd_run(args, home: str) -> int:
    """Run a scheduled or idle job once, now."""
    return _each(home, "run", [args.job], None)


@command("trigger")
def cmd_trigger(args, home: str) -> int:
    """Queue a run of a job with arguments; --wait waits for it and exits with its code."""
    kwargs = dict(_key_value(kv, "--kw") for kv in args.kw)
    with control.Client(home, timeout=None if args.wait else 30.0) as client:
        trigger_id = client.call("trigger", job=args.job, args=args.args + args.more_args, kwargs=kwargs)
        _out(str(trigger_id))
        if not args.wait:
            return EXIT_OK
        sys.stdout.flush()
        result = client.call("wait", trigger=trigger_id)
    return _exit_status(result)


def _exit_status(result: dict) -> int:
    sys.stderr.write(f"aios: trigger {result['trigger']} {result['outcome']} (run {result['run_id']})\n")
    if result["signal"]:
        return 128 + result["signal"]
    if result["exit_code"] is not None:
        return result["exit_code"]
    return EXIT_OK if result["outcome"] == "ok" else EXIT_FAILED


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise AiosError(f"{flag} {text!r}: use KEY=VALUE")
    return key, value


# ================================================================ configuration

@command("apply")
def cmd_apply(args, home: str) -> int:
    """Reload aios.toml (or load FILE in its place) without stopping the daemon."""
    if not args.file:
        return _print_diff(control.call(home, "apply"))
    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise AiosError(f"cannot read {args.file}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return _print_diff(control.call(home, "apply", text=text))
    except control.DaemonNotRunning:
        raise
    except AiosError as exc:
        raise AiosError(f"{args.file} (applied as aios.toml): {exc}") from None


def _print_diff(diff: dict) -> int:
    for sign, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        for name in diff[key]:
            _out(f"{sign} {name} ({key})")
    _out(f"  {len(diff['unchanged'])} unchanged")
    for problem in diff["errors"]:
        sys.stderr.write(f"aios: {problem}\n")
    return EXIT_FAILED if diff["errors"] else EXIT_OK


@command("add")
def cmd_add(args, home: str) -> int:
    """Add a job to aios.toml and apply it."""
    from . import config
    from .spec import parse_job

    table = _job_table(args)
    parse_job(args.name, table)
    text = _config_text(home)
    if _has_job(text, args.name):
        raise AiosError(f"job {args.name!r} already exists in aios.toml; `aios rm {args.name}` first")
    return _save_config(home, text.rstrip("\n") + "\n\n" + config.dump_toml({args.name: table}))


@command("rm")
def cmd_rm(args, home: str) -> int:
    """Remove a job from aios.toml and apply (its processes are stopped)."""
    text = _config_text(home)
    if not _has_job(text, args.name):
        raise AiosError(f"no job named {args.name!r} in aios.toml")
    return _save_config(home, _without_job(text, args.name))


def _config_text(home: str) -> str:
    path = os.path.join(home, "aios.toml")
    if not os.path.exists(path):
        raise AiosError(f"no aios.toml in {home}; `aios up` writes the default one")
    with open(path, encoding="utf-8") as f:
        return f.read()


def _header(name: str):
    import re

    return re.compile(r"^\s*\[\s*jobs\.(?:" + re.escape(name) + r'|"' + re.escape(name) + r'")\s*\]\s*(#.*)?$')


def _has_job(text: str, name: str) -> bool:
    header = _header(name)
    return any(header.match(line) for line in text.splitlines())


def _without_job(text: str, name: str) -> str:
    """The text minus the [jobs.NAME] table (up to the next table header)."""
    header, kept, skipping = _header(name), [], False
    for line in text.splitlines(keepends=True):
        if header.match(line):
            skipping = True
        elif skipping and line.lstrip().startswith("["):
            skipping = False
        if not skipping:
            kept.append(line)
    return "".join(kept)


def _save_config(home: str, text: str) -> int:
    try:
        return _print_diff(control.call(home, "apply", text=text))
    except control.DaemonNotRunning:
        from pathlib import Path

        from .config import load, write_config

        errors = load(Path(home), text).errors
        write_config(Path(home), text)
        _out("aios.toml updated (no daemon running; it takes effect at the next start)")
        for problem in errors:
            sys.stderr.write(f"aios: {problem}\n")
        return EXIT_FAILED if errors else EXIT_OK


_ADD_OPTIONS = (  # (flag, toml key, kind)
    ("--program", "program", str), ("--every", "every", str), ("--interval", "interval", float),
    ("--time", "time", str), ("--after", "after", str), ("--before", "before", str),
    ("--restart", "restart", str), ("--retries", "retries", int), ("--timeout", "timeout", str),
    ("--max-parallel", "max_parallel", int), ("--idle-after", "idle_after", str),
    ("--cooldown", "cooldown", str), ("--cwd", "cwd", str), ("--catch-up", "catch_up", str),
    ("--stop-timeout", "stop_timeout", str), ("--stop-signal", "stop_signal", str),
)


def _job_table(args) -> dict:
    table: dict = {"type": args.type}
    for flag, key, _ in _ADD_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            table[key] = int(value) if key == "interval" and float(value).is_integer() else value
    if args.command:
        table["command"] = " ".join(args.command) if args.shell else list(args.command)
        if args.shell:
            table["shell"] = True
    if args.tag:
        table["tags"] = list(args.tag)
    if args.env:
        table["env"] = dict(_key_value(kv, "--env") for kv in args.env)
    if args.disabled:
        table["enabled"] = False
    return table


# ================================================================ the parser

def _parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="aios", description="Drive the AIOS daemon of a home (its aios.toml, jobs and state).",
        epilog="Exit codes: 0 ok, 1 the operation failed, 2 usage, 3 no daemon is running.")
    parser.add_argument("--home", help="the AIOS home (default: $AIOS_HOME, else the nearest "
                        "folder upward with aios.toml, else ~/.aios)")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    add = _adder(sub)
    _lifecycle_commands(add)
    _reading_commands(add)
    _acting_commands(add)
    _config_commands(add)
    return parser


def _adder(sub):
    def add(name: str, *aliases: str):
        return sub.add_parser(name, aliases=list(aliases), help=(_COMMANDS[name].__doc__ or "").strip(),
                              description=(_COMMANDS[name].__doc__ or "").strip())
    return add


def _lifecycle_commands(add) -> None:
    up = add("up")
    up.add_argument("-d", "--detach", action="store_true", help="run in the background; return once ready")
    up.add_argument("--force", action="store_true", help="clear job state and pending triggers first")
    add("down")
    add("reexec")


def _reading_commands(add) -> None:
    status = add("status", "ls")
    status.add_argument("job", nargs="?")
    status.add_argument("--json", action="store_true")
    for name, default in (("history", 20), ("events", 30)):
        cmd = add(name)
        cmd.add_argument("job", nargs="?")
        cmd.add_argument("-n", type=int, default=default, help=f"how many (default {default})")
        cmd.add_argument("--json", action="store_true")
        if name == "events":
            cmd.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    logs = add("logs")
    logs.add_argument("job")
    logs.add_argument("-n", type=int, default=50, help="how many lines (default 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")


def _acting_commands(add) -> None:
    for name in ("start", "stop", "restart"):
        cmd = add(name)
        cmd.add_argument("jobs", nargs="*", metavar="JOB")
        cmd.add_argument("--all", action="store_true", help="every job this applies to")
    for name in ("enable", "disable", "run"):
        add(name).add_argument("job")
    trigger = add("trigger")
    trigger.add_argument("job")
    trigger.add_argument("args", nargs="*", metavar="ARG", help="positional arguments (strings)")
    trigger.add_argument("--arg", action="append", default=[], dest="more_args", metavar="ARG",
                         help="a positional argument, after those given as ARG (repeatable)")
    trigger.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE", help="a keyword argument")
    trigger.add_argument("--wait", action="store_true", help="wait for the run; exit with its exit code")


def _config_commands(add) -> None:
    apply = add("apply")
    apply.add_argument("file", nargs="?", help="a TOML file to load in place of aios.toml")
    job = add("add")
    job.add_argument("name")
    job.add_argument("--type", required=True, choices=["always", "daily", "interval", "random_daily",
                                                       "trigger", "idle"])
    for flag, _, kind in _ADD_OPTIONS:
        job.add_argument(flag, type=kind)
    job.add_argument("--tag", action="append", help="a device tag the job needs (repeatable)")
    job.add_argument("--env", action="append", metavar="KEY=VALUE", help="an environment variable (repeatable)")
    job.add_argument("--shell", action="store_true", help="run COMMAND through /bin/sh -c")
    job.add_argument("--disabled", action="store_true", help="add it disabled")
    job.add_argument("command", nargs="*", metavar="-- COMMAND", help="the command and its arguments")
    add("rm").add_argument("name")


if __name__ == "__main__":
    sys.exit(main())
