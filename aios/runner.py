"""Child-side entry for `program = "file.py:func"` jobs: load a file from Programs/,
call one function in it, and turn its outcome into an exit code.

Run as a script, never with -m, so that it imports nothing from aios (and nothing of
aios can shadow a job's imports):

    python3 /path/to/aios/runner.py PROGRAMS_DIR FILE.py:FUNC PAYLOAD_JSON

PAYLOAD_JSON is {"args": [...], "kwargs": {...}}. FILE must stay inside PROGRAMS_DIR
once symlinks are resolved. The job sees sys.argv == [path of FILE] and has
PROGRAMS_DIR first on sys.path (in place of this script's own folder), and the folder
holding the aios package last, so a program may use `aios.control` to talk to its daemon.

Exit codes: 0 when func returns (or the int it returns), 1 with the traceback on stderr
when it raises, 2 with a one-line error when the file, the function or the payload is
bad. SystemExit and KeyboardInterrupt keep their usual meaning.
"""
from __future__ import annotations

import os
import sys

USAGE = "usage: runner.py PROGRAMS_DIR FILE.py:FUNC PAYLOAD_JSON"


class Refused(Exception):
    """A bad file, function or payload: reported in one line, exit code 2."""


def resolve(programs: str, file: str) -> str:
    """FILE's path inside PROGRAMS_DIR (as PROGRAMS_DIR spells it); Refused if it escapes
    or is missing. Where it leads is what the kernel says of the opened path, so a
    folder the job's user reaches only through a descriptor (/proc/self/fd/3/Programs:
    a dashboard that runs as a user of its own) resolves as well as any other."""
    if os.path.isabs(file):
        raise Refused(f"{file!r} must be a path relative to {programs}")
    root = _real(programs) or os.path.realpath(programs)
    path = _real(os.path.join(programs, file)) or os.path.realpath(os.path.join(root, file))
    if os.path.commonpath([root, path]) != root or path == root:
        raise Refused(f"{file!r} is outside {programs}; programs must live in that folder")
    inside = os.path.join(programs, os.path.relpath(path, root))
    if not os.path.isfile(inside):
        raise Refused(f"{file!r} not found in {programs}")
    return inside


def _real(path: str) -> str | None:
    """The kernel's name of what path leads to, every link followed (None if nothing)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:              # no /proc
        return os.path.realpath(path)
    finally:
        os.close(fd)


def parse_payload(text: str) -> tuple[list, dict]:
    """(args, kwargs) from the payload JSON; Refused if it is not the expected shape."""
    import json
    try:
        payload = json.loads(text)
    except ValueError as e:
        raise Refused(f"payload is not valid JSON ({e})") from None
    if not isinstance(payload, dict):
        raise Refused('payload must be a JSON object {"args": [...], "kwargs": {...}}')
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise Refused('payload "args" must be a list and "kwargs" an object')
    return args, kwargs


def load(path: str, name: str, func: str):
    """Import the file at path as module `name`; return its function func."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # the program's own errors propagate: exit 1
    target = getattr(module, func, None)
    if not callable(target):
        raise Refused(f"{name}.py has no function {func!r}")
    return target


def prepare(argv: list[str]):
    """Check the command line and set the job's sys.path and sys.argv; return the call."""
    if len(argv) != 3:
        raise Refused(USAGE)
    programs, target, payload = argv
    file, _, func = target.rpartition(":")
    if not file or not func:
        raise Refused(f"program {target!r} must look like 'file.py:function'")
    path = resolve(programs, file)
    args, kwargs = parse_payload(payload)
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and os.path.realpath(sys.path[0] or ".") == here:
        del sys.path[0]             # aios/ itself must not shadow the job's imports
    sys.path.insert(0, os.path.abspath(programs))
    if os.path.dirname(here) not in sys.path:
        sys.path.append(os.path.dirname(here))   # last: programs may `import aios` (its client)
    sys.argv = [os.path.join(programs, file)]
    name = os.path.splitext(os.path.basename(file))[0]
    return path, name, func, args, kwargs


def call(path: str, name: str, func: str, args: list, kwargs: dict) -> int:
    result = load(path, name, func)(*args, **kwargs)
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    return 0


def main(argv: list[str]) -> int:
    try:
        return call(*prepare(argv))
    except Refused as e:
        print(f"aios runner: {e}", file=sys.stderr)
        return 2
    except Exception:
        import traceback
        traceback.print_exc()
        return 1


def flush_stdio() -> None:
    """Flush stdout and stderr, whatever state they are in."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def run(argv: list[str]):
    """What `python3 runner.py ARGS` does: call the job, then exit with its code. What the
    job raises past `main` (SystemExit, KeyboardInterrupt) reaches the interpreter, which
    gives it its usual meaning. A zygote's child (aios/zygote_server.py) ends here too."""
    try:
        if hasattr(sys.stdout, "reconfigure"):
            sys.stdout.reconfigure(line_buffering=True)   # log lines show up as printed
        code = main(argv)
    finally:
        flush_stdio()
    sys.exit(code)


if __name__ == "__main__":
    run(sys.argv[1:])
