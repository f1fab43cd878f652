"""A new home, as the first start writes it: aios.toml with the seven example jobs and
their programs in Programs/ (what exists is never overwritten), with explicit modes
whatever the umask and never through a link (homefs).

A first start as root does not run the network-facing dashboard as root. Its job gets
`user` = a uid no account of the machine has (the range systemd's DynamicUser= uses;
launch.dashboard_id) and `control = true` (that uid may use the control socket), and the
other examples say `user = "root"` out loud (they write in the home or read the state
database, which are root's). The dashboard then needs only what its group is given: the
home and Programs/ to reach and read its program (0750 with that gid), logs/ to tail the
jobs' logs (2750: the logs made later take the folder's group). Everything else (the
database, the token, the socket's owner check, aios.toml) stays root's; the dashboard
asks the daemon for its token. Imports aios.home (the file's name), aios.homefs and,
as root, aios.launch.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .home import CONFIG_FILE

PACKAGE = Path(__file__).parent
DASHBOARD = "web_server.py"
_PROGRAM_LINE = re.compile(r'^program = "([a-z_]+)\.py:main"$', re.M)


def write_default(home: Path, programs: str) -> None:
    """Create home (0o750), aios.toml with the examples unless it exists, and `programs`/
    with any example program not there yet (user edits are kept). A link at Programs/ or
    at a file raises homefs.UnsafePath."""
    from .homefs import folder_below

    home = Path(home)
    folder = folder_below(home, "", create=True)
    try:
        root = os.geteuid() == 0 and not _exists(folder, CONFIG_FILE)
        dashboard = _dashboard_id(home) if root else None
        _create(folder, CONFIG_FILE, default_text(dashboard).encode())
    finally:
        os.close(folder)
    folder = folder_below(home, programs, create=True)
    try:
        for example in sorted((PACKAGE / "programs").glob("*.py")):
            _create(folder, example.name, example.read_bytes())
    finally:
        os.close(folder)
    if dashboard is not None:
        share_with_dashboard(home, programs, dashboard)


def default_text(dashboard: int | None = None) -> str:
    """The default aios.toml; with the dashboard's uid, as a first start as root writes it."""
    text = (PACKAGE / "default.toml").read_text(encoding="utf-8")
    if dashboard is None:
        return text

    def who(match: re.Match) -> str:
        if match[1] + ".py" == DASHBOARD:
            return (f'{match[0]}\nuser = "{dashboard}"          # not root: a uid no account has, only for the '
                    f'dashboard\ncontrol = true           # which may use the daemon\'s control socket')
        return f'{match[0]}\nuser = "root"            # it writes in this home or reads orchestrator.db'

    return _PROGRAM_LINE.sub(who, text)


def share_with_dashboard(home: Path, programs: str, gid: int) -> None:
    """Give the dashboard's group what it needs: to enter the home and read its program,
    and to read every job's log (logs/ set-group-ID, so the logs made later are its group's)."""
    from .homefs import folder_below, open_in

    for relative, mode in (("", None), (programs, None), ("logs", 0o2750)):
        fd = folder_below(home, relative, create=True)
        try:
            os.fchown(fd, -1, gid)
            os.fchmod(fd, mode if mode is not None else (os.fstat(fd).st_mode & 0o7777 & ~0o022) | 0o050)
            if relative == programs:
                program = open_in(fd, DASHBOARD, os.O_RDONLY)
                os.fchown(program, -1, gid)
                os.close(program)
        finally:
            os.close(fd)


def _dashboard_id(home: Path) -> int:
    from .launch import dashboard_id

    return dashboard_id(home)


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


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
