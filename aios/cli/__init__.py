"""The `aios` command (also `python -m aios`): argparse over the control socket.

One module per group of commands (`lifecycle`, `reading`, `logs`, `acting`, `editing`,
`db`, `dashboard`, `service`); each registers its commands with `@command(name, *aliases, setup=...)`,
where `setup(parser)` adds the command's arguments and the docstring is its help. Each command imports only
what it needs: talking to a running daemon costs json and a socket; the store, the
config parser and the engine load only for the commands that use them. Exit codes: 0
ok, 1 the operation failed, 2 usage, 3 no daemon is running, 4 (`status`) a job is
failed or invalid. Imports control, home, show, logs, service, and (lazily) config,
store, daemon, supervisor (to read /proc).
"""
from __future__ import annotations

import os
import sys

from .. import control, version_line
from ..errors import AiosError
from ..home import find_home

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_JOB_FAILED = 0, 1, 2, 3, 4
EXIT_CODES = ("Exit codes: 0 ok, 1 the operation failed, 2 usage, 3 no daemon is running, "
              "4 (status) a job is failed or invalid.")
GROUPS = ("lifecycle", "reading", "logs", "acting", "editing", "db", "dashboard", "service",
          "fleet")   # the modules below, in help order
_COMMANDS: dict = {}    # name -> (handler, setup, aliases)
_ALIASES: dict = {}     # alias -> name


class UsageError(AiosError):
    """The command line is wrong; the message says how (exit code 2)."""


def command(name: str, *aliases: str, setup=None):
    """Register a handler `fn(args, home) -> exit code` as `aios NAME` (and its aliases)."""
    def register(fn):
        _COMMANDS[name] = (fn, setup, aliases)
        _ALIASES.update(dict.fromkeys(aliases, name))
        return fn
    return register


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = _parse(parser, argv)
    home = os.path.abspath(args.home) if args.home else find_home()
    try:
        return _COMMANDS[args.cmd][0](args, home) or EXIT_OK
    except control.DaemonNotRunning as exc:
        return fail(str(exc), EXIT_NOT_RUNNING)
    except UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    except AiosError as exc:
        return fail(str(exc))
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
    args.cmd = _ALIASES.get(args.cmd, args.cmd)
    if args.cmd in ("start", "stop", "restart") and bool(args.jobs) == bool(args.all):
        parser.error(f"{args.cmd}: name one or more jobs, or give --all")
    return args


def count(text: str) -> int:
    """An argparse type: a whole number from 1 (`-n 0` and `-n -5` are usage errors)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def fail(message: str, code: int = EXIT_FAILED) -> int:
    sys.stderr.write(f"aios: {message}\n")
    return code


def out(text: str) -> None:
    sys.stdout.write(text + "\n")


def print_json(value) -> int:
    import json

    out(json.dumps(value, indent=2, default=str))
    return EXIT_OK


def _version_action():
    import argparse

    class Version(argparse.Action):   # argparse's own would re-wrap the line
        def __call__(self, parser, namespace, values, option_string=None):
            out(version_line())
            parser.exit()

    return Version


def _parser():
    import argparse
    from importlib import import_module

    for group in GROUPS:
        import_module(f"{__name__}.{group}")
    parser = argparse.ArgumentParser(
        prog="aios", description="Drive the AIOS daemon of a home (its aios.toml, jobs and state).",
        epilog=EXIT_CODES)
    parser.add_argument("--version", action=_version_action(), nargs=0,
                        help="show AIOS's version, the Python running it and where it is, and exit")
    parser.add_argument("--home", help="the AIOS home (default: $AIOS_HOME, else the nearest "
                        "folder upward with aios.toml, else ~/.aios)")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name, (fn, setup, aliases) in _COMMANDS.items():
        doc = (fn.__doc__ or "").strip()
        cmd = sub.add_parser(name, aliases=list(aliases), help=doc, description=doc)
        if setup is not None:
            setup(cmd)
    return parser
