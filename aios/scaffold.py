"""A new home, as the first start writes it: aios.toml with the seven example jobs and
their programs in Programs/ (what exists is never overwritten), with explicit modes
whatever the umask and never through a link (homefs).

Imports aios.homefs.
"""
from __future__ import annotations

import os
from pathlib import Path

from .home import CONFIG_FILE

PACKAGE = Path(__file__).parent


def write_default(home: Path, programs: str) -> None:
    """Create home (0o750), aios.toml with the examples unless it exists, and `programs`/
    with any example program not there yet (user edits are kept). A link at Programs/ or
    at a file raises homefs.UnsafePath."""
    from .homefs import folder_below

    home = Path(home)
    folder = folder_below(home, "", create=True)
    try:
        _create(folder, CONFIG_FILE, (PACKAGE / "default.toml").read_bytes())
    finally:
        os.close(folder)
    folder = folder_below(home, programs, create=True)
    try:
        for example in sorted((PACKAGE / "programs").glob("*.py")):
            _create(folder, example.name, example.read_bytes())
    finally:
        os.close(folder)


def _create(folder: int, name: str, data: bytes) -> None:
    """Write a new file `name` in folder with mode 0o640; leave an existing one alone."""
    from .homefs import open_in, write_all

    try:
        fd = open_in(folder, name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    except FileExistsError:
        return
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
