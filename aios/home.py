"""Where an AIOS home is: $AIOS_HOME, else the nearest folder upward holding aios.toml,
else ~/.aios. Imports nothing from aios and only os (the CLI's fast path needs it)."""
from __future__ import annotations

import os

CONFIG_FILE = "aios.toml"


def find_home(start: str | None = None) -> str:
    """$AIOS_HOME, else the nearest folder upward from `start` (default: the current
    one) holding aios.toml, else ~/.aios."""
    env = os.environ.get("AIOS_HOME")
    if env:
        return os.path.abspath(os.path.expanduser(env))
    folder = os.path.realpath(start or os.getcwd())
    while True:
        if os.path.isfile(os.path.join(folder, CONFIG_FILE)):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder:
            return os.path.join(os.path.expanduser("~"), ".aios")
        folder = parent
