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
