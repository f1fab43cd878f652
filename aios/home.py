"""Where an AIOS home is: $AIOS_HOME, else the nearest folder upward holding aios.toml,
else ~/.aios; and the dashboard's token kept in it. Imports only aios.errors, and only
os at import time (the CLI's fast path needs it)."""
from __future__ import annotations

import os

from .errors import AiosError

CONFIG_FILE = "aios.toml"
TOKEN_FILE = "dashboard.token"
TOKEN_MIN = 16             # characters a configured [web] token needs at least
_PLACEHOLDERS = ("changeme", "replaceme", "yourtoken", "placeholder", "longrandomstring", "example",
                 "password", "secret", "xxxxxxxx", "12345678")


class TokenError(AiosError):
    """The dashboard's token cannot be used; the message says why and what to do."""


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


# ---------------------------------------------------------------- the dashboard's token

def dashboard_token(home, configured: str | None = None) -> str:
    """The credential of the home's dashboard: `configured` ([web] token) once it passes
    check_token, else the random token in HOME/dashboard.token, made on first use (mode
    0600, owner only, never through a symbolic link). Raises TokenError."""
    if configured is not None:
        return check_token(configured)
    path = os.path.join(str(home), TOKEN_FILE)
    try:
        return _read_token(path)
    except FileNotFoundError:
        pass
    _create_token(path)
    return _read_token(path)


def new_dashboard_token(home) -> str:
    """Replace HOME/dashboard.token with a new random token (every login link and
    session made with the old one stops working once the dashboard restarts)."""
    path = os.path.join(str(home), TOKEN_FILE)
    _create_token(path, replace=True)
    return _read_token(path)


def check_token(token: str) -> str:
    """`token` if it is fit to guard the dashboard: at least TOKEN_MIN characters, not a
    placeholder from an example, not a few characters repeated."""
    fix = "remove [web] token from aios.toml (a random one is then made for you) or set a long random one"
    if len(token) < TOKEN_MIN:
        raise TokenError(f"[web] token is {len(token)} characters; it needs at least {TOKEN_MIN}: {fix}")
    squeezed = "".join(c for c in token.lower() if c.isalnum())
    if any(word in squeezed for word in _PLACEHOLDERS) or len(set(token)) < 8:
        raise TokenError(f"[web] token looks like a placeholder, not a secret: {fix}")
    return token


def _read_token(path: str) -> str:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise TokenError(f"cannot read {path}: {exc.strerror}; remove it and a new token is made") from None
    try:
        _check_private(fd, path)
        token = os.read(fd, 4096).decode("ascii", errors="replace").strip()
    finally:
        os.close(fd)
    if len(token) < TOKEN_MIN:
        raise TokenError(f"{path} holds no usable token; remove it and a new one is made")
    return token


def _check_private(fd: int, path: str) -> None:
    import stat

    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise TokenError(f"{path} is not a regular file; remove it and a new token is made")
    if st.st_uid != os.geteuid():
        raise TokenError(f"{path} belongs to uid {st.st_uid}, not to this user ({os.geteuid()}); "
                         "remove it and a new token is made")
    if st.st_mode & 0o077:
        raise TokenError(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; others may read it: "
                         "remove it and a new token is made (or chmod 600 it)")


def _create_token(path: str, replace: bool = False) -> None:
    """Write a fresh token to a new private file, then link it into place: a reader never
    sees a half-written file, and of two first uses at once one wins, the other reads it."""
    import secrets

    temporary = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temporary, flags, 0o600)
    except FileNotFoundError:
        raise TokenError(f"no AIOS home at {os.path.dirname(path)} (start one with: aios up -d)") from None
    try:
        os.fchmod(fd, 0o600)   # whatever the umask said
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        (os.replace if replace else os.link)(temporary, path)
    except FileExistsError:
        pass
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass     # replaced: it is the token file now
