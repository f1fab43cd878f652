"""The daemon's event loop: one selector, one timer heap, signals as fd events.

`timeout = next deadline - now; select(timeout); run what is ready`. Nothing polls: the
loop sleeps until a timer is due or a file descriptor (pidfd, socket, inotify, the
signal wake-up fd) is readable. Signal handlers only wake the loop
(`signal.set_wakeup_fd`); the work happens in the loop. The clocks are read once per
turn and exposed as `mono` and `wall`. Imports nothing from aios.
"""
from __future__ import annotations

import heapq
import os
import selectors
import signal
import time


class Timer:
    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when: float, fn, args: tuple):
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when


class Loop:
    def __init__(self, on_error=None):
        self.on_error = on_error  # called with the exception when a callback raises
        self.selector = selectors.DefaultSelector()
        self.timers: list[Timer] = []
        self._soon: list = []             # (fn, args) for the next turn
        self.running = False
        self.mono = time.monotonic()
        self.wall = time.time()
        self._signal_pipe: tuple | None = None
        self._old_handlers: dict = {}
        self._old_wakeup_fd = -1

    def tick(self) -> None:
        """Read both clocks; called once per turn."""
        self.mono, self.wall = time.monotonic(), time.time()

    # ---- timers (monotonic clock)
    def call_at(self, when: float, fn, *args) -> Timer:
        timer = Timer(when, fn, args)
        heapq.heappush(self.timers, timer)
        return timer

    def call_later(self, delay: float, fn, *args) -> Timer:
        return self.call_at(self.mono + delay, fn, *args)

    def _run_due(self) -> None:
        while self.timers and (self.timers[0].cancelled or self.timers[0].when <= self.mono):
            timer = heapq.heappop(self.timers)
            if not timer.cancelled:
                self._call(timer.fn, timer.args)

    def _timeout(self) -> float | None:
        while self.timers and self.timers[0].cancelled:
            heapq.heappop(self.timers)
        if not self.timers:
            return None
        return max(0.0, self.timers[0].when - time.monotonic())

    # ---- file descriptors: a reader and/or a writer callback per fd
    def add_reader(self, fd, fn, *args) -> None:
        self._set_callback(fd, 0, (fn, args))

    def remove_reader(self, fd) -> None:
        self._set_callback(fd, 0, None)

    def add_writer(self, fd, fn, *args) -> None:
        self._set_callback(fd, 1, (fn, args))

    def remove_writer(self, fd) -> None:
        self._set_callback(fd, 1, None)

    def _set_callback(self, fd, which: int, callback) -> None:
        try:
            key = self.selector.get_key(fd)
        except (KeyError, ValueError):
            key = None
        callbacks = list(key.data) if key else [None, None]
        callbacks[which] = callback
        mask = (selectors.EVENT_READ if callbacks[0] else 0) | (selectors.EVENT_WRITE if callbacks[1] else 0)
        if key is None:
            if mask:
                self.selector.register(fd, mask, callbacks)
        elif mask:
            self.selector.modify(fd, mask, callbacks)
        else:
            self.selector.unregister(fd)

    def _dispatch(self, key, mask: int) -> None:
        reader, writer = key.data
        if mask & selectors.EVENT_READ and reader:
            self._call(*reader)
        if mask & selectors.EVENT_WRITE and writer and self._still_writer(key.fileobj, writer):
            self._call(*writer)

    def _still_writer(self, fd, writer) -> bool:
        try:
            return self.selector.get_key(fd).data[1] is writer
        except (KeyError, ValueError):
            return False

    # ---- signals
    def watch_signals(self, signums, fn) -> None:
        """Call fn(signum) from the loop for each of `signums` received."""
        reader, writer = os.pipe()
        for fd in (reader, writer):
            os.set_blocking(fd, False)
        self._signal_pipe = (reader, writer)
        self._old_wakeup_fd = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        for signum in signums:
            self._old_handlers[signum] = signal.signal(signum, _wake_only)
        self.add_reader(reader, self._read_signals, fn)

    def _read_signals(self, fn) -> None:
        try:
            data = os.read(self._signal_pipe[0], 512)
        except BlockingIOError:
            return
        for signum in data:
            fn(signum)

    def restore_signals(self) -> None:
        """Put back the handlers and wake-up fd that were there before watch_signals."""
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._old_handlers.clear()
        if self._signal_pipe:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self.remove_reader(self._signal_pipe[0])
            for fd in self._signal_pipe:
                os.close(fd)
            self._signal_pipe = None

    # ---- the loop
    def call_soon(self, fn, *args) -> None:
        """Call fn(*args) in the next turn, after that turn's events: a long piece of work
        split this way lets the loop answer its file descriptors in between."""
        self._soon.append((fn, args))

    def run(self, until) -> None:
        """Turn until `until()` is true."""
        while not until():
            events = self.selector.select(0 if self._soon else self._timeout())
            self.tick()
            soon, self._soon = self._soon, []
            for key, mask in events:
                self._dispatch(key, mask)
            for fn, args in soon:
                self._call(fn, args)
            self._run_due()

    def _call(self, fn, args: tuple) -> None:
        try:
            fn(*args)
        except Exception as exc:  # one failing callback must not take the daemon down
            if self.on_error is None:
                raise
            self.on_error(exc)

    def close(self) -> None:
        self.selector.close()


def _wake_only(signum, frame) -> None:
    """The Python-level handler: the wake-up fd already carries the signal number."""
