"""The daemon's event loop and its clocks: one selector, one timer heap, signals as fd
events.

`timeout = next deadline - now; select(timeout); run what is ready`. Nothing polls: the
loop sleeps until a timer is due or a file descriptor (pidfd, socket, inotify, the
signal wake-up fd) is readable. Signal handlers only wake the loop
(`signal.set_wakeup_fd`); the work happens in the loop.

The clocks are read once per turn, from the clock the loop was given, and exposed as
`boot` and `wall`. Timers run on the boot clock: CLOCK_BOOTTIME, which is monotonic (a
step of the wall clock never moves it) and, unlike CLOCK_MONOTONIC, keeps counting while
the machine is suspended, so "every 30 minutes" and a backoff mean real elapsed time.
The sleep itself (epoll) does not count suspended time, so no single wait is longer than
MAX_WAIT: after a resume the loop is at most that late. Tests give a FakeClock-like
object and turn the loop with `turn(0)`, moving the clock themselves.
Imports nothing from aios.
"""
from __future__ import annotations

import heapq
import os
import selectors
import signal
import time

MAX_WAIT = 60.0     # seconds: the longest single sleep (suspend is invisible to epoll)


class SystemClock:
    """The real clocks: boot (CLOCK_BOOTTIME, else CLOCK_MONOTONIC) and wall (time.time)."""

    def __init__(self):
        self._id = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
        self.boot_id = _boot_id()

    def boot(self) -> float:
        return time.clock_gettime(self._id)

    def wall(self) -> float:
        return time.time()


def _boot_id() -> str:
    """The kernel's id of this boot: boot-clock values compare only within one boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


class Timer:
    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when: float, fn, args: tuple):
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return self.when < other.when


class Loop:
    def __init__(self, clock=None, on_error=None):
        self.clock = clock or SystemClock()
        self.on_error = on_error  # called with the exception when a callback raises
        self.selector = selectors.DefaultSelector()
        self.timers: list[Timer] = []
        self._soon: list = []             # (fn, args) for the next turn
        self.boot = self.clock.boot()
        self.wall = self.clock.wall()
        self._signal_pipe: tuple | None = None
        self._old_handlers: dict = {}
        self._old_wakeup_fd = -1

    def tick(self) -> None:
        """Read both clocks; called once per turn."""
        self.boot, self.wall = self.clock.boot(), self.clock.wall()

    # ---- timers (boot clock)
    def call_at(self, when: float, fn, *args) -> Timer:
        timer = Timer(when, fn, args)
        heapq.heappush(self.timers, timer)
        return timer

    def call_later(self, delay: float, fn, *args) -> Timer:
        return self.call_at(self.boot + delay, fn, *args)

    def next_timer(self) -> float | None:
        """When the next live timer is due (boot clock), or None."""
        while self.timers and self.timers[0].cancelled:
            heapq.heappop(self.timers)
        return self.timers[0].when if self.timers else None

    def _run_due(self) -> None:
        while self.timers and (self.timers[0].cancelled or self.timers[0].when <= self.boot):
            timer = heapq.heappop(self.timers)
            if not timer.cancelled:
                self._call(timer.fn, timer.args)

    def _timeout(self) -> float:
        due = self.next_timer()
        if due is None:
            return MAX_WAIT
        return min(MAX_WAIT, max(0.0, due - self.clock.boot()))

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
        child = False
        for signum in data:
            if signum == signal.SIGCHLD:    # says only that some child changed: once per batch
                if child:
                    continue
                child = True
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
            self.turn(0 if self._soon else self._timeout())

    def turn(self, timeout: float = 0.0) -> None:
        """One turn: wait up to `timeout` for a file descriptor, read the clocks, run the
        ready callbacks, the work put off to this turn, and the due timers."""
        events = self.selector.select(timeout)
        self.tick()
        soon, self._soon = self._soon, []
        for key, mask in events:
            self._dispatch(key, mask)
        for fn, args in soon:
            self._call(fn, args)
        self._run_due()

    @property
    def idle(self) -> bool:
        """Nothing is put off to the next turn and no timer is due now."""
        due = self.next_timer()
        return not self._soon and (due is None or due > self.boot)

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
