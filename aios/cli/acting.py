"""`aios start`, `stop`, `restart`, `enable`, `disable`, `run`, `signal`, `reload`,
`trigger`: acting on jobs (a job with `instances` by its name acts on all its copies)."""
from __future__ import annotations

import sys

from .. import control
from ..errors import AiosError
from . import EXIT_FAILED, EXIT_OK, UsageError, command, count, out


def _each(home: str, op: str, names: list[str], select_all, device: str | None = None, say=None) -> int:
    """Apply one op to the named jobs (or, with --all, to the jobs select_all picks), on
    this device or, with `device`, on that device of the fleet; `say(name, result)` words
    each success."""
    with control.Client(home) as client:
        if select_all:
            names = [j["name"] for j in client.call("status") if select_all(j)]
        failed = 0
        for name in names:
            try:
                if device:
                    result = client.call("route", device=device, request={"op": op, "job": name})
                else:
                    result = client.call(op, job=name)
                out(say(name, result) if say else f"{name}: {op} ok" + (f" on {device}" if device else ""))
            except AiosError as exc:
                failed += 1
                sys.stderr.write(f"aios: {name}: {exc}\n")
    return EXIT_FAILED if failed else EXIT_OK


_RUNNABLE = ("disabled", "ineligible")


def _on_device(cmd) -> None:
    cmd.add_argument("--device", metavar="ID", help="on that device of the fleet (routed through the database)")


def _jobs_or_all(cmd) -> None:
    cmd.add_argument("jobs", nargs="*", metavar="JOB")
    cmd.add_argument("--all", action="store_true", help="every job this applies to")
    _on_device(cmd)


def _one_job(cmd) -> None:
    cmd.add_argument("job")
    _on_device(cmd)


@command("start", setup=_jobs_or_all)
def cmd_start(args, home: str) -> int:
    """Start jobs that are stopped or failed."""
    return _each(home, "start", args.jobs, args.all and (lambda j: j["status"] not in _RUNNABLE), args.device)


@command("stop", setup=_jobs_or_all)
def cmd_stop(args, home: str) -> int:
    """Stop jobs (stop signal to each process group, SIGKILL after stop_timeout)."""
    picked = args.all and (lambda j: j["status"] not in _RUNNABLE + ("stopped",))
    return _each(home, "stop", args.jobs, picked, args.device)


@command("restart", setup=_jobs_or_all)
def cmd_restart(args, home: str) -> int:
    """Stop jobs and start them again."""
    picked = args.all and (lambda j: j["status"] not in _RUNNABLE and (j["type"] == "always" or j["pids"]))
    return _each(home, "restart", args.jobs, picked, args.device)


@command("enable", setup=_one_job)
def cmd_enable(args, home: str) -> int:
    """Enable a job (kept across restarts)."""
    return _each(home, "enable", [args.job], None, args.device)


@command("disable", setup=_one_job)
def cmd_disable(args, home: str) -> int:
    """Disable a job, stopping its processes (kept across restarts)."""
    return _each(home, "disable", [args.job], None, args.device)


@command("run", setup=_one_job)
def cmd_run(args, home: str) -> int:
    """Run a scheduled or idle job once, now."""
    return _each(home, "run", [args.job], None, args.device)


def _signal_arguments(cmd) -> None:
    cmd.add_argument("job")
    cmd.add_argument("signal", help="a signal name: HUP, USR1, TERM, ...")


@command("signal", setup=_signal_arguments)
def cmd_signal(args, home: str) -> int:
    """Send a signal to a job's processes (each whole process group), e.g. HUP to reload."""
    pids = control.call(home, "signal", job=args.job, signal=args.signal)
    out(f"{args.job}: {args.signal.upper()} sent to pid {', '.join(map(str, pids))}")
    return EXIT_OK


def _some_jobs(cmd) -> None:
    cmd.add_argument("jobs", nargs="+", metavar="JOB")


@command("reload", setup=_some_jobs)
def cmd_reload(args, home: str) -> int:
    """Send jobs their reload_signal (e.g. HUP: reread their configuration, no restart)."""
    return _each(home, "reload", args.jobs, None,
                 say=lambda name, pids: f"{name}: reload_signal sent to pid {', '.join(map(str, pids))}")


def _trigger_arguments(cmd) -> None:
    cmd.add_argument("job")
    cmd.add_argument("args", nargs="*", metavar="ARG", help="positional arguments (strings)")
    cmd.add_argument("--arg", action="append", default=[], dest="more_args", metavar="ARG",
                     help="a positional argument, after those given as ARG (repeatable)")
    cmd.add_argument("--kw", action="append", default=[], metavar="KEY=VALUE", help="a keyword argument")
    cmd.add_argument("--wait", action="store_true", help="wait for the run; exit with its exit code")
    cmd.add_argument("--device", metavar="ID", help="for that device of the fleet only")


@command("trigger", setup=_trigger_arguments)
def cmd_trigger(args, home: str) -> int:
    """Queue a run of a job with arguments; --wait waits for it and exits with its code."""
    kwargs = dict(key_value(kv, "--kw") for kv in args.kw)
    with control.Client(home) as client:
        trigger_id = client.call("trigger", job=args.job, args=args.args + args.more_args, kwargs=kwargs,
                                 **({"device": args.device} if args.device else {}))
    out(str(trigger_id))
    if not args.wait:
        return EXIT_OK
    sys.stdout.flush()
    return _exit_status(wait_for(home, trigger_id))


def wait_for(home: str, trigger_id: int, patience: float = 60.0) -> dict:
    """The trigger's result once it is done. A daemon that goes away meanwhile (a re-exec,
    a restart) is waited for up to `patience` seconds and asked again: the answer comes
    from the store, so the run's own exit code survives."""
    import time

    deadline = None
    while True:
        try:
            with control.Client(home, timeout=None) as client:
                return client.call("wait", trigger=trigger_id)
        except control.DaemonNotRunning:
            deadline = deadline or time.monotonic() + patience
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _exit_status(result: dict) -> int:
    outcome = result["outcome"] or "?"
    run = f" (run {result['run_id']})" if result["run_id"] is not None else ""
    sys.stderr.write(f"aios: trigger {result['trigger']} {outcome}{run}\n")
    if result["signal"]:
        return 128 + result["signal"]
    if result["exit_code"] is not None:
        return result["exit_code"]
    return EXIT_OK if outcome == "ok" else EXIT_FAILED


def key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{flag} {text!r}: use KEY=VALUE")
    return key, value


def _triggers_arguments(cmd) -> None:
    cmd.add_argument("words", nargs="*", metavar="[JOB] | drop JOB [ID]",
                     help="list the queued triggers (of JOB), or drop the queued triggers of JOB (or the one ID)")
    cmd.add_argument("-n", type=count, default=100, help="how many to list (default 100)")
    cmd.add_argument("--json", action="store_true")


@command("triggers", setup=_triggers_arguments)
def cmd_triggers(args, home: str) -> int:
    """Queued triggers and why each waits; `aios triggers drop JOB [ID]` removes them unrun."""
    from .. import show
    from . import print_json

    words = args.words
    if words[:1] == ["drop"]:
        if len(words) not in (2, 3) or (len(words) == 3 and not words[2].isdigit()):
            raise UsageError("use: aios triggers drop JOB [ID]")
        dropped = control.call(home, "drop", job=words[1], **({"trigger": int(words[2])} if len(words) == 3 else {}))
        out(f"{dropped} trigger(s) of {words[1]!r} dropped")
        return EXIT_OK if dropped else EXIT_FAILED
    if len(words) > 1:
        raise UsageError("use: aios triggers [JOB], or aios triggers drop JOB [ID]")
    queued = control.call(home, "triggers", **({"job": words[0]} if words else {}), limit=args.n)
    if args.json:
        return print_json(queued)
    color = show.use_color(sys.stdout)
    rows = [[(str(t["id"]), None), (t["job"], "bold"), (show.clock(t["created"]) if t["created"] else "-", None),
             (_short_args(t), None), (t["why"], "dim")] for t in queued]
    out(show.table(["ID", "JOB", "QUEUED", "ARGS", "WHY IT WAITS"], rows, color))
    return EXIT_OK


def _short_args(trigger: dict) -> str:
    import json

    text = json.dumps(trigger["args"] + ([trigger["kwargs"]] if trigger["kwargs"] else []))
    return text if len(text) <= 40 else text[:37] + "..."
