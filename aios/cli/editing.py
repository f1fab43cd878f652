"""`aios apply`, `add`, `rm`: changing aios.toml and applying it."""
from __future__ import annotations

import os
import sys

from .. import control
from ..errors import AiosError
from . import EXIT_FAILED, EXIT_OK, command, out
from .acting import key_value


def _apply_arguments(cmd) -> None:
    cmd.add_argument("file", nargs="?", help="a TOML file to load in place of aios.toml")


@command("apply", setup=_apply_arguments)
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
            out(f"{sign} {name} ({key})")
    out(f"  {len(diff['unchanged'])} unchanged")
    for problem in diff["errors"]:
        sys.stderr.write(f"aios: {problem}\n")
    return EXIT_FAILED if diff["errors"] else EXIT_OK


_ADD_OPTIONS = (  # (flag, toml key, kind)
    ("--program", "program", str), ("--every", "every", str), ("--interval", "interval", float),
    ("--time", "time", str), ("--after", "after", str), ("--before", "before", str),
    ("--restart", "restart", str), ("--retries", "retries", int), ("--timeout", "timeout", str),
    ("--max-parallel", "max_parallel", int), ("--idle-after", "idle_after", str),
    ("--cooldown", "cooldown", str), ("--cwd", "cwd", str), ("--catch-up", "catch_up", str),
    ("--stop-timeout", "stop_timeout", str), ("--stop-signal", "stop_signal", str),
)


def _add_arguments(cmd) -> None:
    cmd.add_argument("name")
    cmd.add_argument("--type", required=True, choices=["always", "daily", "interval", "random_daily",
                                                       "trigger", "idle"])
    for flag, _, kind in _ADD_OPTIONS:
        cmd.add_argument(flag, type=kind)
    cmd.add_argument("--tag", action="append", help="a device tag the job needs (repeatable)")
    cmd.add_argument("--env", action="append", metavar="KEY=VALUE", help="an environment variable (repeatable)")
    cmd.add_argument("--shell", action="store_true", help="run COMMAND through /bin/sh -c")
    cmd.add_argument("--disabled", action="store_true", help="add it disabled")
    cmd.add_argument("command", nargs="*", metavar="-- COMMAND", help="the command and its arguments")


@command("add", setup=_add_arguments)
def cmd_add(args, home: str) -> int:
    """Add a job to aios.toml and apply it."""
    from .. import config
    from ..spec import parse_job

    table = _job_table(args)
    parse_job(args.name, table)
    text = _config_text(home)
    if _has_job(text, args.name):
        raise AiosError(f"job {args.name!r} already exists in aios.toml; `aios rm {args.name}` first")
    return _save_config(home, text.rstrip("\n") + "\n\n" + config.dump_toml({args.name: table}))


@command("rm", setup=lambda cmd: cmd.add_argument("name"))
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

        from ..config import load, write_config

        errors = load(Path(home), text).errors
        write_config(Path(home), text)
        out("aios.toml updated (no daemon running; it takes effect at the next start)")
        for problem in errors:
            sys.stderr.write(f"aios: {problem}\n")
        return EXIT_FAILED if errors else EXIT_OK


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
        table["env"] = dict(key_value(kv, "--env") for kv in args.env)
    if args.disabled:
        table["enabled"] = False
    return table
