"""File-system change notification (Linux inotify through ctypes), so the daemon can
wake on a changed file instead of polling it.

A `Watcher` is one non-blocking, close-on-exec inotify fd: put `fileno()` in a selector
and call `read()` when it is readable. `open_watcher()` returns None where inotify is
not available (not Linux, no libc symbol, or inotify_init1 failing, e.g. out of
instances); callers then poll. `FileWatches` watches many files by their paths through
one Watcher (also seeing each created or replaced); `watch_file()` gives a watch of one.
ctypes is imported only when a Watcher is made.
Imports nothing from aios.
"""
from __future__ import annotations

import errno
import os
import struct
import sys

__all__ = [
    "Watcher", "FileWatch", "FileWatches", "open_watcher", "watch_file", "IN_ACCESS", "IN_MODIFY", "IN_ATTRIB",
    "IN_CLOSE_WRITE",
    "IN_MOVED_FROM", "IN_MOVED_TO", "IN_CREATE", "IN_DELETE", "IN_DELETE_SELF",
    "IN_MOVE_SELF", "IN_IGNORED", "IN_Q_OVERFLOW", "IN_ISDIR", "IN_ONLYDIR", "IN_ONESHOT",
]

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000     # events were lost (wd -1): rescan what you watch
IN_IGNORED = 0x00008000        # the watch is gone (removed, oneshot fired, path deleted)
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
IN_ONESHOT = 0x80000000

_IN_NONBLOCK = 0o4000          # O_NONBLOCK
_IN_CLOEXEC = 0o2000000        # O_CLOEXEC
_HEADER = struct.Struct("iIII")   # wd, mask, cookie, len (struct inotify_event)


class Watcher:
    """One inotify instance; raises OSError if the kernel refuses one."""

    def __init__(self):
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self._errno = ctypes.get_errno
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        self._fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self._fd < 0:
            self._raise("inotify_init1")

    def _raise(self, what: str, path: str | None = None) -> None:
        err = self._errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)

    def fileno(self) -> int:
        return self._fd

    def add(self, path: str, mask: int) -> int:
        """Watch path for the events in mask; return the watch descriptor."""
        wd = self._add(self._fd, os.fsencode(path), mask)
        if wd < 0:
            self._raise("inotify_add_watch", path)
        return wd

    def remove(self, wd: int) -> None:
        """Stop a watch; a watch already gone (oneshot fired, path deleted) is fine."""
        if self._rm(self._fd, wd) < 0 and self._errno() != errno.EINVAL:
            self._raise("inotify_rm_watch")

    def read(self) -> list[tuple[int, int, str]]:
        """Every queued event as (wd, mask, name); [] when none. Never blocks."""
        events: list[tuple[int, int, str]] = []
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return events
            events.extend(_parse(data))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _parse(data: bytes) -> list[tuple[int, int, str]]:
    events = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        offset += _HEADER.size
        name = data[offset:offset + length].rstrip(b"\0")
        offset += length
        events.append((wd, mask, os.fsdecode(name)))
    return events


def open_watcher() -> Watcher | None:
    """A Watcher, or None where inotify is not available (then poll instead)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return Watcher()
    except (OSError, AttributeError, ImportError):
        return None


class FileWatches:
    """Files watched through one Watcher, whatever their number (a user has few inotify
    instances: 128 by default). `add(path, wake)` watches a file (writes, truncation) and
    its folder (the file created, or replaced by a rename); `add_folder(path, wake)` a
    folder for any file created in it; `dispatch()`, called when
    fileno() is readable, calls the `wake()` of every file something happened to.
    Watches shared by several files (one folder, one file followed twice) are removed
    with the last of them."""

    def __init__(self, watcher: Watcher):
        self.watcher = watcher
        self.users: dict[int, set[Watched]] = {}     # watch descriptor -> the files using it

    def fileno(self) -> int:
        return self.watcher.fileno()

    def add(self, path: str, wake) -> Watched:
        """Watch path; OSError if its folder cannot be watched (missing, no watches left)."""
        watched = Watched(path, wake)
        watched.folder = self._use(watched, os.path.dirname(path) or ".", IN_CREATE | IN_MOVED_TO)
        watched.file = self._watch_file(watched)
        return watched

    def add_folder(self, path: str, wake) -> Watched:
        """Call wake() whenever a file is created in (or renamed into) the folder path;
        OSError if it cannot be watched."""
        watched = Watched(os.path.join(path, ""), wake)
        watched.folder = self._use(watched, path, IN_CREATE | IN_MOVED_TO)
        return watched

    def remove(self, watched: Watched) -> None:
        for wd in (watched.folder, watched.file):
            self._release(watched, wd)
        watched.folder = watched.file = None

    def dispatch(self) -> None:
        woken: set[Watched] = set()
        for wd, mask, name in self.watcher.read():
            if mask & IN_Q_OVERFLOW:
                woken.update(*self.users.values())
            for watched in list(self.users.get(wd, ())):
                if wd == watched.folder and not watched.name:       # a folder's: any new file
                    woken.add(watched)
                elif wd == watched.folder and name == watched.name:
                    self._release(watched, watched.file)
                    watched.file = self._watch_file(watched)
                    woken.add(watched)
                elif wd == watched.file:
                    woken.add(watched)
            if mask & IN_IGNORED:       # the kernel dropped it (the file is gone)
                for watched in self.users.pop(wd, ()):
                    watched.file = None if watched.file == wd else watched.file
        for watched in woken:
            watched.wake()

    def close(self) -> None:
        self.users.clear()
        self.watcher.close()

    def _watch_file(self, watched: Watched) -> int | None:
        try:
            return self._use(watched, watched.path, IN_MODIFY)
        except OSError:
            return None      # not there yet: the folder's watch reports its creation

    def _use(self, watched: Watched, path: str, mask: int) -> int:
        wd = self.watcher.add(path, mask)
        self.users.setdefault(wd, set()).add(watched)
        return wd

    def _release(self, watched: Watched, wd: int | None) -> None:
        users = self.users.get(wd)
        if users is None:
            return
        users.discard(watched)
        if not users:
            del self.users[wd]
            self.watcher.remove(wd)


class Watched:
    """One file of a FileWatches (or, with an empty name, a folder): its path and the
    watch descriptors it uses."""

    __slots__ = ("path", "name", "wake", "folder", "file")

    def __init__(self, path: str, wake):
        self.path, self.name, self.wake = path, os.path.basename(path), wake
        self.folder: int | None = None
        self.file: int | None = None


class FileWatch:
    """One file watched through a Watcher of its own: readable when anything happened
    there; `changed()` says whether it concerned the file."""

    def __init__(self, watcher: Watcher, path: str):
        self.watches = FileWatches(watcher)
        self.hit = False
        self.watches.add(path, self._hit)

    def _hit(self) -> None:
        self.hit = True

    def fileno(self) -> int:
        return self.watches.fileno()

    def changed(self) -> bool:
        """Consume the queued events; True if one concerns the file."""
        self.hit = False
        self.watches.dispatch()
        return self.hit

    def close(self) -> None:
        self.watches.close()


def watch_file(path: str) -> FileWatch | None:
    """A FileWatch of path, or None where inotify or the file's folder is missing."""
    watcher = open_watcher()
    if watcher is None:
        return None
    try:
        return FileWatch(watcher, path)
    except OSError:
        watcher.close()
        return None
