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
