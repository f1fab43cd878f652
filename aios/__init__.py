"""AIOS: one small daemon per device that keeps programs alive and runs scheduled,
triggered and idle-time jobs, with its state in SQLite. Needs Python 3.9 or newer
(3.9 and 3.10 also need the tomli package, to read aios.toml)."""
import sys

__version__ = "0.1.0"

if sys.version_info < (3, 9):
    raise SystemExit(f"AIOS needs Python 3.9 or newer; this is Python {sys.version.split()[0]} "
                     f"({sys.executable}): run it with a newer python3")


def version_line() -> str:
    """What `aios --version` prints: AIOS's version, the Python running it, the package."""
    import os

    return (f"aios {__version__} (Python {sys.version.split()[0]} at {sys.executable}; "
            f"package {os.path.dirname(os.path.abspath(__file__))})")


def keep_bytecode() -> None:
    """Call first thing in an entry point (simple_orchestrator.py, `python -m aios`, the
    `aios` script): with bytecode writing turned off (PYTHONDONTWRITEBYTECODE, -B), as
    in many containers and sandboxes, a clone would compile every module of AIOS at
    every start (a cold start of 93 ms instead of 58). Then this process keeps its .pyc
    files under the user's cache instead ($XDG_CACHE_HOME/aios/pycache, else
    ~/.cache/aios/pycache: sys.pycache_prefix), never beside the sources. Nothing
    changes when bytecode is written anyway, when a prefix is set already, when the
    cache cannot be made, or with AIOS_NO_BYTECODE_CACHE=1. Jobs are not affected: they
    are other processes."""
    import os

    if not sys.dont_write_bytecode or sys.pycache_prefix is not None or os.environ.get("AIOS_NO_BYTECODE_CACHE"):
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "aios", "pycache")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return
    if os.access(folder, os.W_OK):
        sys.pycache_prefix, sys.dont_write_bytecode = folder, False
