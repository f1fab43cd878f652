"""`aios apply`, `add`, `rm`: changing aios.toml and applying it.

Every edit holds an flock on aios.toml.lock in the home from reading aios.toml to the
daemon's reply, so parallel edits all land (aios.toml itself cannot carry the lock: it
is replaced by rename). An edit that would make aios.toml invalid is refused and leaves
it as it was; the file an edit replaces is kept as aios.toml.prev.
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .. import control
from ..errors import AiosError
from . import EXIT_FAILED, EXIT_OK, UsageError, command, out
from .acting import key_value

LOCK_FILE = "aios.toml.lock"
UPDATED = "aios.toml updated (no daemon running; it takes effect at the next start)"


@contextmanager
def edit_lock(home: str):
    """Hold the home's edit lock (waiting, and saying so, while another edit holds it)."""
    import fcntl

    from ..homefs import UnsafePath, open_below

    path = os.path.join(home, LOCK_FILE)
    try:
        fd = open_below(home, LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except UnsafePath as exc:
        raise AiosError(f"cannot open the edit lock: {exc}") from None
    except OSError as exc:
        raise AiosError(f"cannot open the edit lock {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write("aios: waiting for another edit of aios.toml to finish\n")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _apply_arguments(cmd) -> None:
    cmd.add_argument("file", nargs="?", help="a TOML file to load in place of aios.toml")
    cmd.add_argument("--check", action="store_true", help="print what would change and every error; change nothing")


@command("apply", setup=_apply_arguments)
def cmd_apply(args, home: str) -> int:
    """Reload aios.toml (or load FILE in its place, refused whole if it has any error)
    without stopping the daemon; --check only shows what would change."""
    text = _read_text(args.file) if args.file else None
    try:
        if args.check:
            return _check(home, text)
        with edit_lock(home):
            if text is None:
                return _print_diff(control.call(home, "apply"))
            try:
                return _print_diff(control.call(home, "apply", text=text))
            except control.DaemonNotRunning:
                return _replace_offline(home, text)
    except control.DaemonNotRunning:
        raise
    except AiosError as exc:
        raise AiosError(f"{args.file} (applied as aios.toml): {exc}" if args.file else str(exc)) from None


def _read_text(file: str) -> str:
    try:
        with open(file, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise AiosError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None


def _check(home: str, text: str | None) -> int:
    """What applying would change, from the daemon, or with it down from the jobs it last ran."""
    try:
        diff = control.call(home, "apply", check=True, **({} if text is None else {"text": text}))
        against = "the running daemon's jobs"
    except control.DaemonNotRunning:
        diff, against = _check_offline(home, text)
    code = _print_diff(diff)
    sys.stderr.write(f"aios: checked against {against}; nothing was changed\n")
    return code


def _check_offline(home: str, text: str | None) -> tuple[dict, str]:
    from ..config import load
    from ..engine.reconcile import changes
    from .reading import open_stored

    cfg = load(Path(home), text)
    if not os.path.exists(os.path.join(home, "orchestrator.db")):
        return {**changes({}, cfg), "errors": cfg.errors}, "no jobs (no daemon has run in this home)"
    with open_stored(home) as store:
        running = store.load_specs()
    return {**changes(running, cfg), "errors": cfg.errors}, "the jobs the last daemon ran (it is not running)"


def _replace_offline(home: str, text: str) -> int:
    from ..config import load, require_valid, write_config

    require_valid(load(Path(home), text))
    write_config(Path(home), text, backup=True)
    out(UPDATED)
    return EXIT_OK


def _print_diff(diff: dict) -> int:
    kept, fields = diff.get("kept", {}), diff.get("fields", {})
    for sign, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        for name in diff[key]:
            what = f"changed: {', '.join(fields[name])}" if fields.get(name) else key
            out(f"{sign} {name} ({what})")
    for name in kept:
        out(f"! {name} (its new table is invalid: it keeps running on the previous one)")
    out(f"  {len([n for n in diff['unchanged'] if n not in kept])} unchanged")
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
    from ..jobtable import parse_job
    from ..spec import SpecError

    table = _job_table(args)
    try:
        parse_job(args.name, table)
    except SpecError as exc:   # the options given are wrong: a usage error
        raise UsageError(str(exc)) from None
    with edit_lock(home):
        text = _config_text(home)
        if _has_job(text, args.name):
            raise AiosError(f"job {args.name!r} already exists in aios.toml; `aios rm {args.name}` first")
        return _save_config(home, text, text.rstrip("\n") + "\n\n" + config.dump_toml({args.name: table}))


@command("rm", setup=lambda cmd: cmd.add_argument("name"))
def cmd_rm(args, home: str) -> int:
    """Remove a job from aios.toml and apply (its processes are stopped)."""
    with edit_lock(home):
        text = _config_text(home)
        if not _has_job(text, args.name):
            raise AiosError(f"no job named {args.name!r} in aios.toml")
        return _save_config(home, text, _without_job(text, args.name))


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


def _save_config(home: str, old: str, new: str) -> int:
    """Replace aios.toml by `new` unless that makes a job invalid that was not, then apply."""
    from ..config import load, write_config

    before, after = load(Path(home), old), load(Path(home), new)
    introduced = [why for name, why in after.invalid.items() if name not in before.invalid]
    if introduced:
        raise AiosError("; ".join(introduced))
    write_config(Path(home), new, backup=True)
    try:
        return _print_diff(control.call(home, "apply"))
    except control.DaemonNotRunning:
        out(UPDATED)
        for problem in after.errors:
            sys.stderr.write(f"aios: {problem}\n")
        return EXIT_FAILED if after.errors else EXIT_OK


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
