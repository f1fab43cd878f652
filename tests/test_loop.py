"""The event loop: timers in order, fd callbacks, call_soon in the next turn, signals as
fd events, and a failing callback that does not stop the loop."""
from __future__ import annotations

import os
import signal

from aios.engine.loop import Loop


def test_timers_run_in_order_and_can_be_cancelled():
    loop, seen = Loop(), []
    loop.call_later(0.02, seen.append, "b")
    loop.call_later(0.01, seen.append, "a")
    loop.call_later(0.015, seen.append, "never").cancel()
    loop.call_later(0.03, seen.append, "c")
    loop.run(until=lambda: len(seen) == 3)
    assert seen == ["a", "b", "c"]


def test_call_soon_runs_in_the_next_turn_after_that_turns_events():
    loop, seen = Loop(), []
    reader, writer = os.pipe()

    def chain(n: int) -> None:
        seen.append(f"work {n}")
        if n == 0:
            os.write(writer, b"x")      # becomes readable: handled before the next piece of work
        if n < 2:
            loop.call_soon(chain, n + 1)

    def readable() -> None:
        os.read(reader, 1)
        seen.append("fd")

    loop.add_reader(reader, readable)
    loop.call_soon(chain, 0)
    loop.run(until=lambda: len(seen) == 4)
    assert seen == ["work 0", "fd", "work 1", "work 2"]
    os.close(reader)
    os.close(writer)


def test_signals_arrive_as_loop_callbacks_and_handlers_are_restored():
    loop, seen = Loop(), []
    before = signal.getsignal(signal.SIGUSR1)
    loop.watch_signals([signal.SIGUSR1], seen.append)
    os.kill(os.getpid(), signal.SIGUSR1)
    loop.run(until=lambda: seen)
    assert seen == [signal.SIGUSR1]
    loop.restore_signals()
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_failing_callback_is_reported_and_the_loop_goes_on():
    errors, seen = [], []
    loop = Loop(on_error=errors.append)
    loop.call_later(0, lambda: 1 / 0)
    loop.call_later(0.01, seen.append, "after")
    loop.run(until=lambda: seen)
    assert [type(e) for e in errors] == [ZeroDivisionError] and seen == ["after"]
