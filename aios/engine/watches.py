"""What the daemon watches besides its children: the store (another process may insert
rows into `triggers`, as with the original orchestrator, including RESTART_ALL and
RESTART_<job>) and the job logs (kept bounded while jobs write them directly). inotify
where there is one; a slow poll elsewhere. Part of the engine.
"""
from __future__ import annotations

import os
from pathlib import Path

LOG_RECHECK = 1.0        # a chatty job's log size is checked at most this often...
LOG_MIN_RECHECK = 0.01   # ...unless it grows so fast that it would pass max_size many times over
LOG_REPORT_EVERY = 10.0  # log_rotated events of one log, at most once in this many seconds
STORE_POLL = 0.1         # where inotify is missing, look for store changes this often
STORE_SETTLE = (0.005, 0.02, 0.1, 0.5)   # a write to the store not visible yet: look again after these
STORE_RELISTEN = 1.0     # a lost LISTEN connection is tried again this often


def watch(engine) -> None:
    """Wake when another process writes the database (e.g. a row in `triggers`), and when
    a job log grows (LogGuard)."""
    from .. import fswatch

    watcher = fswatch.open_watcher()
    guard = engine.processes.log_guard = LogGuard(engine, watcher)
    for job in engine.jobs.values():
        if job.runs:
            guard.arm(str(engine.log_path(job.name)))
    if engine.store.wakeup_fd() is not None:   # PostgreSQL: LISTEN/NOTIFY wakes us, no file to watch
        return StoreWakeups(engine).listen()
    if watcher is None:
        engine.loop.call_later(STORE_POLL, _poll_store, engine)
        return
    home_wd = watcher.add(str(engine.home), fswatch.IN_MODIFY | fswatch.IN_CREATE | fswatch.IN_MOVED_TO)
    engine.loop.add_reader(watcher.fileno(), _on_fs_events, engine, watcher, home_wd, StoreWatch(engine))


def _poll_store(engine) -> None:
    if not engine.shutting_down:
        engine.planner.refresh_queue()
        engine.loop.call_later(STORE_POLL, _poll_store, engine)


def _on_fs_events(engine, watcher, home_wd: int, store_watch: StoreWatch) -> None:
    store_touched = False
    for wd, _mask, name in watcher.read():
        if wd == home_wd:
            store_touched = store_touched or name.startswith("orchestrator.db")
        else:
            engine.processes.log_guard.on_event(wd)
    if store_touched:
        store_watch.touched()


class StoreWakeups:
    """A store that says when others committed (PostgreSQL's LISTEN): its descriptor in the
    loop; each wake-up re-reads what changed. A lost listening connection is listened to
    again, every STORE_RELISTEN seconds until the database answers, and everything is
    looked at once it does (changes may have been missed meanwhile)."""

    def __init__(self, engine):
        self.engine, self.fd = engine, None

    def listen(self, again: bool = False) -> None:
        from ..store import StoreError

        try:
            self.fd = self.engine.store.wakeup_fd()
        except StoreError as exc:
            self.engine.recorder.failed(exc)
            self.engine.loop.call_later(STORE_RELISTEN, self.listen, True)
            return
        self.engine.loop.add_reader(self.fd, self._woken)
        if again:   # changes may have been missed meanwhile: look at everything
            self.engine.planner.refresh_queue(anyway=True)
            if self.engine.fleet is not None:
                self.engine.fleet.on_change(frozenset({"fleet_jobs", "leases", "commands"}))

    def _woken(self) -> None:
        from ..store import WAKEUP_LOST

        changed = self.engine.store.drain_wakeups()
        if changed == WAKEUP_LOST:
            self.engine.loop.remove_reader(self.fd)
            return self.listen(again=True)
        if "triggers" in changed:
            self.engine.planner.refresh_queue(anyway=True)
        if self.engine.fleet is not None:
            self.engine.fleet.on_change(changed)
        return None


class StoreWatch:
    """Another process's commit is visible a moment after inotify reports its write to the
    WAL file: the commit ends by updating the WAL index through shared memory, which no
    file event reports. And the kernel merges a second write's event into the first's
    while it is unread, so what a look finds may be only the first commit. So after every
    write the store is looked at again a few times (STORE_SETTLE; a look that finds no
    change costs one PRAGMA), or a row could wait for the next write to be noticed."""

    def __init__(self, engine):
        self.engine, self.timer = engine, None

    def touched(self, step: int = 0) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.engine.planner.refresh_queue()
        if step < len(STORE_SETTLE) and not self.engine.shutting_down:
            self.timer = self.engine.loop.call_later(STORE_SETTLE[step], self.touched, step + 1)


# ---------------------------------------------------------------- log rotation

class LogGuard:
    """Keeps job logs bounded while jobs write them directly (no pipe through the daemon,
    so jobs outlive a daemon crash): a one-shot inotify watch per log wakes us on the first
    write after arming; we rotate if needed and re-arm a while later. The wait adapts to
    how fast the log grows: LOG_RECHECK seconds for a slow writer, down to LOG_MIN_RECHECK
    for one that would otherwise fill max_size many times over in between (a job writing
    hundreds of MB a second), so a log passes max_size by at most what its job writes in
    about LOG_MIN_RECHECK seconds. A silent job costs nothing; a chatty one a stat() a
    second; a flood at most 1 / LOG_MIN_RECHECK checks a second. `log_rotated` is
    reported at most every LOG_REPORT_EVERY seconds per log. Without inotify, the logs of
    running jobs are checked every LOG_RECHECK * 5 seconds."""

    def __init__(self, engine, watcher):
        self.engine, self.watcher = engine, watcher
        self.paths: dict[int, str] = {}
        self.seen: dict[str, tuple[float, int]] = {}        # path -> (when, size) at the last check
        self.reported: dict[str, tuple[float, int]] = {}    # path -> (last report, rotations since)
        if watcher is None:
            engine.loop.call_later(LOG_RECHECK * 5, self._sweep)

    def arm(self, path: str) -> None:
        if self.watcher is None:
            return
        from .. import fswatch

        try:
            self.paths[self.watcher.add(path, fswatch.IN_MODIFY | fswatch.IN_ONESHOT)] = path
        except OSError:
            pass  # the file vanished; the next spawn arms it again

    def on_event(self, wd: int) -> bool:
        """Handle an event of one of our watches; False if `wd` is not ours."""
        path = self.paths.pop(wd, None)
        if path is None:
            return False
        self.engine.loop.call_later(self._check(path), self.arm, path)
        return True

    def _sweep(self) -> None:
        for job in self.engine.jobs.values():
            if job.runs:
                self._check(str(self.engine.log_path(job.name)))
        if not self.engine.shutting_down:
            self.engine.loop.call_later(LOG_RECHECK * 5, self._sweep)

    def _check(self, path: str) -> float:
        """Rotate the log if it passed max_size; return how soon to look at it again."""
        from .. import logs

        settings, now = self.engine.settings, self.engine.loop.boot
        try:
            size = os.stat(path).st_size
            rotated = logs.rotate_if_needed(path, settings.log_max_bytes, settings.log_keep)
        except OSError as exc:   # e.g. no space left for the copy: say so, look again later
            self._report(path, now, f"could not rotate: {exc}")
            return LOG_RECHECK
        if rotated:
            self._report(path, now, f"passed {settings.log_max_bytes} bytes; rotated")
        last, self.seen[path] = self.seen.get(path), (now, 0 if rotated else size)
        if last is None or now - last[0] > 2 * LOG_RECHECK:
            return LOG_MIN_RECHECK   # the first write in a while: look again soon to learn the pace
        grown = size - last[1]
        if grown <= 0:
            return LOG_RECHECK
        room = settings.log_max_bytes - self.seen[path][1]
        return min(LOG_RECHECK, max(LOG_MIN_RECHECK, 0.5 * room * (now - last[0]) / grown))

    def _report(self, path: str, now: float, message: str) -> None:
        last, count = self.reported.get(path, (None, 0))
        if last is not None and now - last < LOG_REPORT_EVERY:
            self.reported[path] = (last, count + 1)
            return
        self.reported[path] = (now, 0)
        more = f" ({count} more time(s) in the last {now - last:.0f} s)" if count else ""
        self.engine.event("log_rotated", Path(path).stem, message + more)
