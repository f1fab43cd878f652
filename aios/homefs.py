"""Files in an AIOS home, handled so that the home cannot be turned against its owner.

Below the home no symbolic link is followed: a link planted at logs/, at a job's log, at
aios.pid or at the database gets a one-line UnsafePath naming it, never a read, write,
truncation or rename through it. Each path is opened one component at a time from a
folder the caller trusts (`base`, usually the home itself, which may be a link of the
owner's choosing), every component with O_NOFOLLOW; files are created with explicit
modes, whatever the umask.

The home must belong to the daemon's user, and neither it nor a folder above it may be
writable by anyone else (unless sticky, like /tmp; a group of the owner's alone, a
user private group, is the owner): `check_home`. A file the daemon
trusts (its database) must be a regular file of its own that no one else may write:
`check_own_file`. Imports only aios.errors; os at import time.
"""
from __future__ import annotations

import os

from .errors import AiosError

__all__ = ["UnsafePath", "UnsafeHome", "open_below", "open_in", "folder_below", "check_home", "check_own_file",
           "replace_file", "write_all"]

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW


class UnsafePath(AiosError, OSError):
    """A path in the home is a symbolic link or not what AIOS made there; nothing was
    done through it."""

    def __init__(self, message: str = "", err: int | None = None):
        super().__init__(message)
        self.errno = err

    def __str__(self) -> str:
        return self.args[0]


class UnsafeHome(AiosError):
    """The home (or a folder above it) could be changed by another user; the daemon
    refuses to start in it."""


# ---------------------------------------------------------------- opening without links

def folder_below(base, relative: str, create: bool = False, mode: int = 0o750) -> int:
    """An fd of the folder base/relative ("" for base itself), each component below base
    opened with O_NOFOLLOW (and made with `mode` when missing, with `create`, base too).
    Close it."""
    if create:
        os.makedirs(str(base), mode, exist_ok=True)
    fd = os.open(str(base), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in _parts(relative):
            inner = _step(fd, part, create, mode, os.path.join(str(base), relative))
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_below(base, relative: str, flags: int, mode: int = 0o600, folder_mode: int = 0o750) -> int:
    """os.open of the regular file base/relative with no link followed below base; a file
    it creates has exactly `mode` (an existing one keeps its own), and missing folders on
    the way are made with `folder_mode` when flags hold O_CREAT. UnsafePath (an OSError)
    for a link, a folder that is not one, or a file that is not regular (a FIFO would
    block the daemon)."""
    folder, name = os.path.split(relative)
    parent = folder_below(base, folder, create=bool(flags & os.O_CREAT), mode=folder_mode)
    try:
        return open_in(parent, name, flags, mode, os.path.join(str(base), relative))
    finally:
        os.close(parent)


def open_in(folder: int, name: str, flags: int, mode: int = 0o600, shown: str | None = None) -> int:
    """open_below's last step: the regular file `name` in the folder fd `folder`."""
    blocking = not flags & os.O_NONBLOCK
    try:
        fd = _open_at(folder, name, flags | _NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        raise _unsafe(exc, shown or name, folder, name) from None
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{_shorten(shown or name)} is not a regular file; remove it (AIOS makes it again)")
    if blocking:
        os.set_blocking(fd, True)
    return fd


def _open_at(folder: int, name: str, flags: int, mode: int) -> int:
    """Open name in folder; a file this call creates gets exactly `mode`."""
    if not flags & os.O_CREAT or flags & os.O_EXCL:
        fd = os.open(name, flags, mode, dir_fd=folder)
        if flags & os.O_CREAT:
            _fix_mode(fd, mode)
        return fd
    try:
        fd = os.open(name, flags | os.O_EXCL, mode, dir_fd=folder)
    except FileExistsError:
        return os.open(name, flags & ~os.O_CREAT, dir_fd=folder)
    _fix_mode(fd, mode)
    return fd


def replace_file(base, relative: str, data: bytes, mode: int = 0o640, sync: bool = True,
                 group_of_old: bool = True) -> None:
    """Replace base/relative by a new file holding `data` (written beside it under a new
    name, then renamed over it: a reader sees the old or the new file, and a link at
    either name is replaced, never written through). The new file keeps the group of the
    one it replaces (so those who could read it still can)."""
    import secrets

    folder, name = os.path.split(relative)
    parent = folder_below(base, folder)
    temporary = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode, dir_fd=parent)
        try:
            _fix_mode(fd, mode)
            if group_of_old:
                _keep_group(fd, parent, name)
            write_all(fd, data)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        _unlink_at(parent, temporary)
        raise
    finally:
        os.close(parent)


def _parts(relative: str) -> list[str]:
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{relative!r} leaves its base folder")
    return parts


def _step(fd: int, part: str, create: bool, mode: int, shown: str) -> int:
    """The fd of folder `part` inside folder fd."""
    try:
        made = False
        if create:
            try:
                os.mkdir(part, mode, dir_fd=fd)
                made = True
            except FileExistsError:
                pass
        folder = os.open(part, _FOLDER, dir_fd=fd)
    except OSError as exc:
        raise _unsafe(exc, shown, fd, part) from None
    if made:
        _fix_mode(folder, mode)
    return folder


def _unsafe(exc: OSError, path: str, folder: int, name: str) -> OSError:
    """ELOOP / ENOTDIR as one line naming what is there instead; other errors unchanged."""
    import errno
    import stat

    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK, errno.ENXIO):
        return exc
    try:
        found = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except OSError:
        return exc
    if stat.S_ISLNK(found.st_mode):
        target = os.readlink(name, dir_fd=folder)
        what = f"is a symbolic link (to {target[:200]!r})"
    else:
        what = "is not a folder" if exc.errno == errno.ENOTDIR else "is not a regular file"
    return UnsafePath(f"{_shorten(path)} {what}; AIOS never follows a link in its home: put the file "
                      "itself there, or remove the link", exc.errno)


def _fix_mode(fd: int, mode: int) -> None:
    """A file or folder just made: the umask may have narrowed its mode (a set-group-ID
    bit it took from its folder stays)."""
    import stat

    now = stat.S_IMODE(os.fstat(fd).st_mode)
    if now & 0o777 != mode & 0o777:
        os.fchmod(fd, (now & 0o7000) | mode)


def _keep_group(fd: int, folder: int, name: str) -> None:
    try:
        old = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return
    import stat

    if stat.S_ISREG(old.st_mode) and old.st_gid != os.fstat(fd).st_gid:
        try:
            os.fchown(fd, -1, old.st_gid)
        except PermissionError:
            pass    # a group we are not in: the file gets ours


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink_at(folder: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        pass


def _shorten(path: str) -> str:
    return path if len(path) <= 300 else path[:297] + "..."


# ---------------------------------------------------------------- who may change the home

def check_home(home) -> None:
    """Refuse (UnsafeHome, one line with the fix) a home that another user could change:
    not owned by this process's user, writable by group or others, or below a folder
    that someone other than root and this user owns or may write (sticky ones, like
    /tmp, excepted: there others may not move what is ours)."""
    import stat

    home = os.path.abspath(str(home))
    me = os.geteuid()
    st = os.stat(home)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeHome(f"AIOS home {home} is not a folder; point AIOS_HOME at a folder")
    if st.st_uid != me:
        raise UnsafeHome(f"AIOS home {home} belongs to {_user(st.st_uid)}, not to this daemon's user "
                         f"{_user(me)}: run the daemon as {_user(st.st_uid)} (aios service install as "
                         f"them), or chown {_user(me)} {home}")
    if _others_may_write(st):
        raise UnsafeHome(f"AIOS home {home} has mode {stat.S_IMODE(st.st_mode):04o}: others may write "
                         f"into it (and replace aios.toml or plant links): chmod go-w {home}")
    _check_above(home, me)


def _check_above(home: str, me: int) -> None:
    import stat

    folder = os.path.dirname(os.path.realpath(home))
    while True:
        st = os.stat(folder)
        sticky = st.st_mode & stat.S_ISVTX
        if st.st_uid not in (0, me) and not sticky:
            raise UnsafeHome(f"AIOS home {home} is inside {folder}, which belongs to {_user(st.st_uid)}, "
                             f"who could move the home aside and put another in its place: choose a home "
                             f"in a folder of root or {_user(me)}")
        if _others_may_write(st) and not sticky:
            raise UnsafeHome(f"AIOS home {home} is inside {folder} (mode {stat.S_IMODE(st.st_mode):04o}), "
                             f"where others may move the home aside and put another in its place: "
                             f"chmod go-w {folder}, or choose a home elsewhere")
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def check_own_file(path: str, what: str) -> None:
    """Refuse (UnsafePath, one line naming `what` at path and the fix) a file that is a
    link, not a regular file, another user's, or writable by group or others. A missing
    file is fine."""
    import stat

    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{what} {path} is a symbolic link; AIOS never follows one: put the file itself there")
    if not stat.S_ISREG(st.st_mode):
        raise UnsafePath(f"{what} {path} is not a regular file; remove it")
    me = os.geteuid()
    if st.st_uid != me:
        raise UnsafePath(f"{what} {path} belongs to {_user(st.st_uid)}, not to {_user(me)}, who runs AIOS "
                         f"here: chown {_user(me)} {path} if it is yours, or run AIOS as its owner")
    if _others_may_write(st):
        raise UnsafePath(f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}: others may write it: "
                         f"chmod go-w {path}")


def _others_may_write(st: os.stat_result) -> bool:
    """Others may write it, or a group with someone else in it: a group of the owner's
    alone (a user private group, as umask 002 systems give every user) is the owner."""
    if st.st_mode & 0o002:
        return True
    return bool(st.st_mode & 0o020) and not _private_group(st.st_gid, st.st_uid)


def _private_group(gid: int, uid: int) -> bool:
    try:
        import grp
        import pwd

        owner, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except (KeyError, ImportError):
        return False
    return owner.pw_gid == gid and set(group.gr_mem) <= {owner.pw_name}


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"
