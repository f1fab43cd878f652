"""Every write the engine makes to its store goes through the Recorder.

Two kinds of write: `write` commits at once (a run about to be spawned, a run's end and
its trigger's outcome), `later`, `save_state` and `event` join one transaction at the
end of the loop turn (a run's pid, job states, events: a turn that starts a hundred
jobs commits their states and events once). A state is what the engine can rebuild; a
run record is what lets the next daemon find a job's process, so it is committed
before the process exists. An event is announced (its `announce` callback called with
the event and its id) only once it is stored: persist, then announce.

The daemon keeps supervising when its database is full, locked or broken: a write that
fails waits in memory (in order in the backlog; the latest state of each job on its
own), the error is reported once, and every RETRY seconds the waiting writes are tried
again, in order, until they pass. Meanwhile callers check `failing` before claiming
triggers. `failure` holds the error while the store fails (the engine then refuses to acknowledge
triggers). Part of the engine; imports spec and store.
"""
from __future__ import annotations

from collections import deque

from ..spec import Event, JobState, Run, replace
from ..store import Store, StoreError

RETRY = 1.0            # while the store fails, the waiting writes are retried this often
MAX_BACKLOG = 10_000   # waiting writes beyond which new events are dropped (and counted)


class Recorder:
    def __init__(self, store: Store, loop, log, on_recovered):
        self.store, self.loop, self.log, self.on_recovered = store, loop, log, on_recovered
        self.failing = False
        self.failure = ""                        # the store's error while it fails
        self._states: dict[str, JobState] = {}   # the latest unwritten state of each job
        self._soon: list = []                    # (fn, args) for the end of this loop turn
        self._backlog: deque = deque()           # (fn, args, then) waiting for the store, in order
        self._turn = self._timer = None
        self._late = self._dropped = 0
        self._announce: list = []                # (announce, event) stored in this transaction

    def write(self, fn, *args, then=None) -> None:
        """Do one store write now, or queue it behind the writes already waiting; `then()`
        is called once it is done (e.g. to answer a client only after the commit)."""
        if not self.failing:
            try:
                fn(*args)
            except StoreError as exc:
                self.failed(exc)
            else:
                if then is not None:
                    then()
                return
        self._backlog.append((fn, args, then))

    def later(self, fn, *args) -> None:
        """A write for the end of this loop turn, in one transaction with the others."""
        if self.failing:
            self._backlog.append((fn, args, None))
        else:
            self._soon.append((fn, args))
            self._end_turn_soon()

    def save_state(self, state: JobState) -> None:
        self._states[state.job] = state
        self._end_turn_soon()

    def event(self, event: Event, announce=None) -> None:
        """Record an event at the end of this turn, then call announce(event with its id);
        while the store fails, at most MAX_BACKLOG writes wait and further events are only
        counted (and never announced)."""
        if not self.failing:
            self.later(self._add_event, event, announce)
        elif len(self._backlog) < MAX_BACKLOG:
            self._backlog.append((self._add_event, (event, announce), None))
        else:
            self._dropped += 1

    def _add_event(self, event: Event, announce) -> None:
        event_id = self.store.add_event(event)
        if announce is not None:
            self._announce.append((announce, replace(event, id=event_id)))

    def _announce_stored(self) -> None:
        done, self._announce = self._announce, []
        for announce, event in done:
            announce(event)

    def start_run(self, run: Run) -> Run:
        """The run with its id, committed now; without an id while the store fails (the
        caller then queues `insert_run` or `end_run`, which record it later)."""
        if not self.failing:
            try:
                return self.store.start_run(run)
            except StoreError as exc:
                self.failed(exc)
        return run

    def insert_run(self, holder) -> None:
        """Record `holder.run` if it was started while the store failed (it has no id)."""
        if holder.run.id is None:
            holder.run = self.store.start_run(holder.run)

    def end_run(self, holder, finish_trigger: bool) -> None:
        self.insert_run(holder)
        self.store.finish_run(holder.run, finish_trigger=finish_trigger)

    # ---- the end of a loop turn
    def _end_turn_soon(self) -> None:
        if self._turn is None:
            self._turn = self.loop.call_later(0, self._end_turn)

    def _end_turn(self) -> None:
        self._turn = None
        soon, self._soon = self._soon, []
        if self.failing:
            self._backlog.extend((fn, args, None) for fn, args in soon)
            return
        try:
            with self.store.batch():
                for fn, args in soon:
                    fn(*args)
                self._write_states()
        except StoreError as exc:   # the transaction rolled back: all of it waits
            self._announce.clear()
            self.failed(exc)
            self._backlog.extend((fn, args, None) for fn, args in soon)
            return
        self._announce_stored()

    def _write_states(self) -> None:
        for state in self._states.values():
            self.store.save_state(state)
        self._states.clear()

    # ---- failure and recovery
    def failed(self, exc: Exception) -> None:
        """Report the first failure of an outage (once), and retry until the store is back."""
        self.failure = str(exc)
        if not self.failing:
            self.failing = True
            self.log(f"store_error: {exc}; jobs keep running and their records wait in memory "
                     f"(retried every {RETRY:g} s)")
            self._backlog.append((self.store.add_event, (Event(
                ts=self.loop.wall, name="store_error", message=str(exc), device=self.store.device),), None))
        if self._timer is None:
            self._timer = self.loop.call_later(RETRY, self._retry)

    def _retry(self) -> None:
        self._timer = None
        if self.flush():
            written, dropped = self._late, self._dropped
            self._late = self._dropped = 0
            self.failing, self.failure = False, ""
            self.on_recovered(written, dropped)
        else:
            self._timer = self.loop.call_later(RETRY, self._retry)

    def flush(self) -> bool:
        """Write everything that waits, in order (the daemon also calls this before it
        exits or re-executes); False if the store still fails."""
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None
        self._backlog.extend((fn, args, None) for fn, args in self._soon)
        self._soon = []
        try:
            while self._backlog:
                self._write_first()
            with self.store.batch():
                self._write_states()
        except StoreError:
            self._announce.clear()
            return False
        return True

    def _write_first(self) -> None:
        fn, args, then = self._backlog[0]
        try:
            fn(*args)
        except StoreError:
            raise
        except Exception as exc:  # a bug, not the store: report it, do not retry it forever
            self.loop.on_error(exc)
        self._backlog.popleft()
        self._late += 1
        self._announce_stored()
        if then is not None:
            then()
