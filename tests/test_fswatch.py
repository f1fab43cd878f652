"""fswatch: a real inotify instance on real files, woken through a selector."""
from __future__ import annotations

import errno
import os
import selectors
import sys

import pytest

from aios import fswatch
from aios.fswatch import IN_CLOSE_WRITE, IN_CREATE, IN_IGNORED, IN_MODIFY, IN_ONESHOT

LIVENESS = 30.0

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux")


@pytest.fixture
def watcher():
    w = fswatch.open_watcher()
    assert w is not None, "inotify should be available on Linux"
    yield w
    w.close()


def wait_events(watcher, until) -> list:
    """Events read whenever the watcher's fd is readable, until `until(events)` holds."""
    events: list = []
    with selectors.DefaultSelector() as sel:
        sel.register(watcher.fileno(), selectors.EVENT_READ)
        while not until(events):
            assert sel.select(LIVENESS), f"no inotify event within {LIVENESS} s: {events}"
            events.extend(watcher.read())
    return events


def test_write_in_a_watched_folder_wakes_a_selector(watcher, tmp_path):
    wd = watcher.add(str(tmp_path), IN_CREATE | IN_CLOSE_WRITE | IN_MODIFY)
    assert watcher.read() == []                     # nothing queued: returns at once
    (tmp_path / "new.txt").write_text("hello")
    events = wait_events(watcher, lambda ev: any(m & IN_CLOSE_WRITE for _, m, _ in ev))
    assert (wd, IN_CREATE, "new.txt") in events
    assert any(w == wd and m & IN_MODIFY and n == "new.txt" for w, m, n in events)


def test_oneshot_fires_once(watcher, tmp_path):
    target = tmp_path / "state.txt"
    target.write_text("0")
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    once = watcher.add(str(target), IN_MODIFY | IN_ONESHOT)
    always = watcher.add(str(sentinel), IN_CREATE)

    target.write_text("1")
    (sentinel / "a").touch()
    first = wait_events(watcher, lambda ev: any(w == always for w, _, _ in ev))
    assert sum(1 for w, m, _ in first if w == once and m & IN_MODIFY) == 1
    assert any(w == once and m & IN_IGNORED for w, m, _ in first)   # the watch is gone

    target.write_text("2")
    (sentinel / "b").touch()        # queued after anything the second write produced
    second = wait_events(watcher, lambda ev: any(w == always for w, _, _ in ev))
    assert [e for e in second if e[0] == once] == []
    watcher.remove(once)            # already gone: not an error


def test_remove_stops_a_watch(watcher, tmp_path):
    wd = watcher.add(str(tmp_path), IN_CREATE)
    watcher.remove(wd)
    (tmp_path / "after").touch()
    events = wait_events(watcher, lambda ev: any(m & IN_IGNORED for _, m, _ in ev))
    assert all(m & IN_CREATE == 0 for _, m, _ in events)


def test_add_on_a_missing_path_raises_naming_it(watcher, tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(OSError) as info:
        watcher.add(missing, IN_CREATE)
    assert info.value.errno == errno.ENOENT and info.value.filename == missing


def test_fd_is_nonblocking_close_on_exec_and_close_is_idempotent():
    w = fswatch.open_watcher()
    assert w is not None
    fd = w.fileno()
    assert fd >= 0 and not os.get_inheritable(fd) and not os.get_blocking(fd)
    w.close()
    w.close()
    with fswatch.Watcher() as other:
        assert other.fileno() >= 0


# ---------------------------------------------------------------- many files, one instance

class Woken:
    """Which files a FileWatches woke, read through a selector on its one fd."""

    def __init__(self, watches):
        self.watches, self.seen = watches, []

    def waker(self, name: str):
        return lambda: self.seen.append(name)

    def until(self, *names: str) -> list:
        with selectors.DefaultSelector() as sel:
            sel.register(self.watches.fileno(), selectors.EVENT_READ)
            while not set(names) <= set(self.seen):
                assert sel.select(LIVENESS), f"not woken within {LIVENESS} s; saw {self.seen}"
                self.watches.dispatch()
        seen, self.seen = self.seen, []
        return sorted(seen)


def test_many_files_share_one_instance_and_wake_only_their_own(watcher, tmp_path):
    watches = fswatch.FileWatches(watcher)
    woken = Woken(watches)
    paths = {name: tmp_path / f"{name}.log" for name in ("a", "b", "c")}
    paths["a"].write_text("")
    handles = {name: watches.add(str(path), woken.waker(name)) for name, path in paths.items()}
    twice = watches.add(str(paths["a"]), woken.waker("a again"))      # one file followed by two viewers
    with open(paths["a"], "a") as f:
        f.write("x\n")
    assert woken.until("a", "a again") == ["a", "a again"]
    paths["b"].write_text("created\n")                                  # created after the watch
    assert woken.until("b") == ["b"]
    fresh = tmp_path / "fresh"
    fresh.write_text("replacement\n")
    os.rename(fresh, paths["c"])                                        # replaced by a rename
    assert woken.until("c") == ["c"]
    with open(paths["c"], "a") as f:                                     # and the new file is watched
        f.write("more\n")
    assert woken.until("c") == ["c"]
    watches.remove(twice)
    with open(paths["a"], "a") as f:
        f.write("y\n")
    assert woken.until("a") == ["a"]
    for handle in handles.values():
        watches.remove(handle)
    assert watches.users == {}, "every watch is removed with the last file using it"
    assert os.readlink(f"/proc/self/fd/{watches.fileno()}") == "anon_inode:inotify"


def test_a_file_whose_folder_is_missing_cannot_be_watched(watcher, tmp_path):
    watches = fswatch.FileWatches(watcher)
    with pytest.raises(OSError):
        watches.add(str(tmp_path / "nowhere" / "x.log"), lambda: None)
    assert watches.users == {}
